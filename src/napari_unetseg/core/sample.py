"""Synthetic sample data: a small stack of nucleus-like blobs with painted strokes.

Generated, not downloaded: the plugin's sample data, the ``unetseg demo`` and the
unit tests all use it. Label numbering follows the painting convention: 1 = background,
2 = nucleus, and 0 = unpainted in the strokes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from skimage import draw

BACKGROUND, NUCLEUS = 1, 2


@dataclass
class SampleData:
    """Image ``(N, Y, X)`` uint16, dense ``truth`` and sparse ``strokes`` (uint8)."""

    image: np.ndarray
    truth: np.ndarray
    strokes: np.ndarray


def _nuclei_mask(size: int, rng: np.random.Generator, count: int) -> np.ndarray:
    mask = np.zeros((size, size), dtype=bool)
    for _ in range(count):
        r = rng.uniform(7, 16)
        centre = rng.uniform(r, size - r, 2)
        rr, cc = draw.ellipse(
            centre[0],
            centre[1],
            r,
            r * rng.uniform(0.6, 1.0),
            shape=mask.shape,
            rotation=rng.uniform(0, np.pi),
        )
        mask[rr, cc] = True
    return mask


def _image_from_mask(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    size = mask.shape[0]
    brightness = ndimage.gaussian_filter(rng.uniform(0.5, 1.0, mask.shape), 6)
    texture = 1 + 0.25 * ndimage.gaussian_filter(rng.normal(size=mask.shape), 1.5)
    signal = ndimage.gaussian_filter(mask * brightness * texture * 1.6, 1.2)
    yy, xx = np.mgrid[:size, :size] / size
    background = 0.15 + 0.1 * (yy + xx)
    noisy = rng.poisson((signal + background) * 200) + rng.normal(0, 8, mask.shape)
    return np.clip(noisy + 100, 0, 65535).astype(np.uint16)


def _stroke(shape, rng: np.random.Generator, y: int, x: int, length: float) -> np.ndarray:
    """A 3-px wide straight stroke of ``length`` pixels centred on ``(y, x)``."""
    angle = rng.uniform(0, np.pi)
    dy, dx = 0.5 * length * np.sin(angle), 0.5 * length * np.cos(angle)
    y0, y1 = (int(np.clip(v, 0, shape[0] - 1)) for v in (y - dy, y + dy))
    x0, x1 = (int(np.clip(v, 0, shape[1] - 1)) for v in (x - dx, x + dx))
    line = np.zeros(shape, dtype=bool)
    line[draw.line(y0, x0, y1, x1)] = True
    return ndimage.binary_dilation(line, iterations=1)


def _strokes(mask: np.ndarray, rng: np.random.Generator, grid: int = 3, nuclei: int = 6) -> np.ndarray:
    """Strokes as a user paints them: background in every part of the image, a few nuclei.

    One background stroke per cell of a ``grid`` x ``grid`` partition of the slice (where
    the cell has background), and one stroke across each of ``nuclei`` random nuclei; all
    kept inside their (eroded) class region.
    """
    strokes = np.zeros(mask.shape, dtype=np.uint8)
    background = ndimage.binary_erosion(~mask, iterations=4)
    cells = np.array_split(np.arange(mask.shape[0]), grid), np.array_split(np.arange(mask.shape[1]), grid)
    for rows in cells[0]:
        for cols in cells[1]:
            ys, xs = np.nonzero(background[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1])
            if len(ys):
                i = rng.integers(len(ys))
                line = _stroke(mask.shape, rng, rows[0] + ys[i], cols[0] + xs[i], 30)
                strokes[line & background] = BACKGROUND
    inside = ndimage.binary_erosion(mask, iterations=3)
    components, count = ndimage.label(inside)
    for label in rng.permutation(np.arange(1, count + 1))[:nuclei]:
        ys, xs = np.nonzero(components == label)
        line = _stroke(mask.shape, rng, int(ys.mean()), int(xs.mean()), 2 * np.sqrt(len(ys) / np.pi))
        strokes[line & inside] = NUCLEUS
    return strokes


def make_sample(n_slices: int = 4, size: int = 256, painted_slices: int = 2, seed: int = 0) -> SampleData:
    """Generate the sample stack.

    Parameters
    ----------
    n_slices, size
        Stack shape ``(n_slices, size, size)``.
    painted_slices
        Number of leading slices that get strokes; the others stay unpainted.
    seed
        Random seed (the same seed gives the same data).
    """
    rng = np.random.default_rng(seed)
    count = max(4, int(30 * (size / 256) ** 2))
    masks = [_nuclei_mask(size, rng, count) for _ in range(n_slices)]
    image = np.stack([_image_from_mask(m, rng) for m in masks])
    truth = np.where(np.stack(masks), NUCLEUS, BACKGROUND).astype(np.uint8)
    strokes = np.zeros_like(truth)
    for i in range(min(painted_slices, n_slices)):
        strokes[i] = _strokes(masks[i], rng)
    return SampleData(image=image, truth=truth, strokes=strokes)

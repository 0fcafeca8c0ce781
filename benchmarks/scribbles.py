"""Thin scribbles drawn from a dense ground truth, as a user would paint them.

:func:`draw_scribbles`: the ISBI membrane simulator of the earlier benchmarks.
:func:`draw_class_strokes`: any number of classes (benchmarks/scribbles_suite.py).

Membrane strokes follow the membrane's centre line (its skeleton) for a stretch and are
3 px wide; interior strokes are short 3 px lines well inside cells. The budget caps the
painted pixels at a fraction of the slice (the issue asks for <= 2 %).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage import draw
from skimage.morphology import skeletonize

from napari_unetseg.core.sample import _stroke  # the sample data's strokes: 3 px, centred, random angle

_NEIGHBOURS = [(-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)]


def _walk(skeleton: np.ndarray, start: tuple[int, int], length: int) -> list[tuple[int, int]]:
    """Follow skeleton pixels from ``start`` for up to ``length`` steps."""
    path, seen = [start], {start}
    y, x = start
    for _ in range(length):
        nxt = [
            (y + dy, x + dx)
            for dy, dx in _NEIGHBOURS
            if 0 <= y + dy < skeleton.shape[0]
            and 0 <= x + dx < skeleton.shape[1]
            and skeleton[y + dy, x + dx]
            and (y + dy, x + dx) not in seen
        ]
        if not nxt:
            break
        y, x = nxt[0]
        seen.add((y, x))
        path.append((y, x))
    return path


def _centre_line_stroke(
    skeleton: np.ndarray, rng: np.random.Generator, ys: np.ndarray, xs: np.ndarray, length: int
) -> np.ndarray:
    """A 3-px stroke along ``skeleton`` for up to ``length`` px from a random one of its
    pixels ``(ys, xs)``."""
    i = rng.integers(len(ys))
    line = np.zeros(skeleton.shape, bool)
    line[tuple(np.array(_walk(skeleton, (ys[i], xs[i]), length)).T)] = True
    return ndimage.binary_dilation(line, iterations=1)


def draw_scribbles(
    truth: np.ndarray,
    rng: np.random.Generator,
    strokes_per_class: int = 6,
    membrane_length: int = 60,
    interior_length: int = 30,
    budget: float = 0.02,
) -> np.ndarray:
    """Scribbles for one 2D slice: 1 = membrane, 2 = interior, 0 = unpainted."""
    membrane = truth == 1
    out = np.zeros(truth.shape, np.uint8)
    skeleton = skeletonize(membrane)
    ys, xs = np.nonzero(skeleton)
    for _ in range(strokes_per_class):
        out[_centre_line_stroke(skeleton, rng, ys, xs, membrane_length) & membrane] = 1
    inside = ndimage.binary_erosion(~membrane, iterations=4)
    ys, xs = np.nonzero(inside)
    for _ in range(strokes_per_class):
        i = rng.integers(len(ys))
        angle = rng.uniform(0, np.pi)
        y1 = int(np.clip(ys[i] + interior_length * np.sin(angle), 0, truth.shape[0] - 1))
        x1 = int(np.clip(xs[i] + interior_length * np.cos(angle), 0, truth.shape[1] - 1))
        line = np.zeros_like(membrane)
        rr, cc = draw.line(ys[i], xs[i], y1, x1)
        line[rr, cc] = True
        out[ndimage.binary_dilation(line, iterations=1) & inside] = 2
    if (out > 0).mean() > budget:
        raise ValueError(f"scribbles cover {(out > 0).mean():.2%} > budget {budget:.0%}")
    return out


def is_thin(region: np.ndarray, elongation: float = 4.0) -> bool:
    """A class is thin when its pieces are long and narrow (membranes, boundaries): their
    area over that of a disc as wide as they are, weighted by area, is above ``elongation``
    (a disc: 1, a 4:1 ellipse: 4). Thin classes are painted along their centre line."""
    pieces, count = ndimage.label(region)
    if count == 0:
        return False
    index = np.arange(1, count + 1)
    areas = ndimage.sum(region, pieces, index)
    depth = ndimage.maximum(ndimage.distance_transform_edt(region), pieces, index)
    ratio = areas / (np.pi * np.maximum(depth, 1) ** 2)
    return float(np.sum(ratio * areas) / np.sum(areas)) > elongation


def draw_class_strokes(
    classes: np.ndarray,
    rng: np.random.Generator,
    grid: int = 4,
    objects: int = 12,
    thin_strokes: int = 8,
    thin_length: int = 60,
    budget: float = 0.02,
) -> np.ndarray:
    """Strokes for one 2D slice of any number of classes, as a user paints them.

    ``classes`` holds 0..K-1 (0: the background-like class); the strokes hold class + 1
    (0 = unpainted). Every class present is painted, with 3-px strokes kept inside it:
    class 0 once in each cell of a ``grid`` x ``grid`` partition of the slice (30 px
    strokes); a thin class (:func:`is_thin`) along its centre line, ``thin_strokes``
    strokes of up to ``thin_length`` px; any other class across ``objects`` random
    pieces of it (a stroke as long as the piece is wide).
    """
    out = np.zeros(classes.shape, np.uint8)
    for value in np.unique(classes):
        region = classes == value
        if value > 0 and is_thin(region):
            skeleton = skeletonize(region)
            ys, xs = np.nonzero(skeleton)
            for _ in range(thin_strokes if len(ys) else 0):
                out[_centre_line_stroke(skeleton, rng, ys, xs, thin_length) & region] = value + 1
            continue
        inside = ndimage.binary_erosion(region, iterations=3)
        inside = inside if inside.any() else region
        if value == 0:
            rows = np.array_split(np.arange(classes.shape[0]), grid)
            cols = np.array_split(np.arange(classes.shape[1]), grid)
            for r in rows:
                for c in cols:
                    ys, xs = np.nonzero(inside[r[0] : r[-1] + 1, c[0] : c[-1] + 1])
                    if len(ys):
                        i = rng.integers(len(ys))
                        stroke = _stroke(classes.shape, rng, r[0] + ys[i], c[0] + xs[i], 30)
                        out[stroke & inside] = 1
            continue
        pieces, count = ndimage.label(inside)
        for piece in rng.permutation(np.arange(1, count + 1))[:objects]:
            ys, xs = np.nonzero(pieces == piece)
            width = 2 * np.sqrt(len(ys) / np.pi)
            stroke = _stroke(classes.shape, rng, int(np.median(ys)), int(np.median(xs)), width)
            out[stroke & (pieces == piece)] = value + 1
    if (out > 0).mean() > budget:
        raise ValueError(f"strokes cover {(out > 0).mean():.2%} > budget {budget:.0%}")
    return out

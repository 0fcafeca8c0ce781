"""Thin scribbles drawn from a dense ground truth, as a user would paint them.

Membrane strokes follow the membrane's centre line (its skeleton) for a stretch and are
3 px wide; interior strokes are short 3 px lines well inside cells. The budget caps the
painted pixels at a fraction of the slice (the issue asks for <= 2 %).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage import draw
from skimage.morphology import skeletonize

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
        i = rng.integers(len(ys))
        line = np.zeros_like(membrane)
        for y, x in _walk(skeleton, (ys[i], xs[i]), membrane_length):
            line[y, x] = True
        out[ndimage.binary_dilation(line, iterations=1) & membrane] = 1
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

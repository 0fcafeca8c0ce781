"""Overlap-tile geometry: tile positions, blending weights, mirror padding.

Small pure functions, shared by prediction of any image size, 2D ``(C, Y, X)`` or 3D
``(C, Z, Y, X)`` (every function works per spatial axis):

* the image is mirror-padded by half the overlap on each side (the U-Net paper's
  overlap-tile strategy: border pixels get context, not zeros), and up to one tile;
* tiles are evenly spaced so the first starts at 0 and the last ends at the border,
  with at least the requested overlap between neighbours (no wasted partial window);
* each tile's logits are weighted by a gaussian (or constant) map and accumulated;
  the sum is divided by the accumulated weights.
"""

from __future__ import annotations

import functools
import itertools
import math

import numpy as np

from napari_unetseg.core.errors import UserInputError

DEFAULT_OVERLAP_PX = 64


def overlap_pixels(overlap: float | None, tile: int) -> int:
    """The overlap between neighbouring tiles in pixels.

    ``overlap`` below 1 is a fraction of the tile (0.25 of 256 = 64 px); a whole
    number from 1 up is pixels; ``None`` is the default, 64 px (a quarter of the tile
    for tiles under 256 px). It must leave the tiles a step forward: smaller than
    the tile.

    Raises
    ------
    UserInputError
        For a negative overlap, a fractional one above 1, or one as large as the tile.
    """
    if overlap is None:
        return min(DEFAULT_OVERLAP_PX, tile // 4)
    if isinstance(overlap, bool) or not isinstance(overlap, (int, float)):
        raise UserInputError(f"must be a number, got {overlap!r}", subject="overlap")
    if overlap < 0 or (overlap >= 1 and overlap != int(overlap)):
        raise UserInputError(
            f"must be a fraction in [0, 1) or a whole number of pixels, got {overlap:g}", subject="overlap"
        )
    pixels = int(round(overlap * tile)) if overlap < 1 else int(overlap)
    if pixels >= tile:
        raise UserInputError(
            f"an overlap of {pixels} px leaves no step between {tile}-px tiles",
            ("make it smaller", "overlap"),
        )
    return pixels


def axis_overlaps(overlap: float | None, tiles: tuple[int, ...]) -> tuple[int, ...]:
    """:func:`overlap_pixels` per axis. In 3D the z tiles are short: a fraction applies
    to each axis alike, while an overlap in pixels (or the default) is capped at a
    quarter of the z tile."""
    xy = overlap_pixels(overlap, tiles[-1])
    if len(tiles) == 2:
        return (xy, xy)
    if overlap is not None and overlap < 1:
        z = overlap_pixels(overlap, tiles[0])
    else:
        z = min(xy, tiles[0] // 4)
    return (z, xy, xy)


def tile_starts(length: int, tile: int, overlap_px: int) -> list[int]:
    """Evenly spaced tile starts covering ``[0, length)`` with ``>= overlap_px`` overlap."""
    if length <= tile:
        return [0]
    step = max(1, tile - overlap_px)
    count = math.ceil((length - tile) / step) + 1
    return sorted({round(i * (length - tile) / (count - 1)) for i in range(count)})


def tile_grid(
    shape: tuple[int, ...], tile: tuple[int, ...], overlap_px: int | tuple[int, ...]
) -> list[tuple[int, ...]]:
    """All tile corners (``(top, left)`` in 2D) for an image of spatial ``shape``."""
    overlaps = overlap_px if isinstance(overlap_px, tuple) else (overlap_px,) * len(shape)
    starts = [tile_starts(n, t, o) for n, t, o in zip(shape, tile, overlaps)]
    return list(itertools.product(*starts))


@functools.lru_cache(maxsize=16)
def blend_weights(tile: tuple[int, ...], mode: str = "gaussian", sigma_scale: float = 0.125) -> np.ndarray:
    """Blending weights for one tile, max 1 (cached: computed once per tile size).

    ``gaussian``: an isotropic gaussian with sigma = ``sigma_scale`` x tile side (as
    nnU-Net and MONAI), so tile centres dominate and tile borders fade out.
    ``constant``: plain averaging of overlaps.
    """
    if mode == "constant":
        weights = np.ones(tile, dtype=np.float32)
    elif mode == "gaussian":
        axes = []
        for size in tile:
            centre = (size - 1) / 2
            sigma = sigma_scale * size
            axes.append(np.exp(-0.5 * ((np.arange(size) - centre) / sigma) ** 2))
        weights = functools.reduce(np.multiply.outer, axes).astype(np.float32)
        weights /= weights.max()
        weights = np.maximum(weights, 1e-3)  # the floor MONAI uses: tile corners still count
    else:
        raise ValueError(f"unknown blending {mode!r}")
    weights.flags.writeable = False
    return weights


def pad_widths(
    sizes: tuple[int, ...], margin: int | tuple[int, ...], min_size: tuple[int, ...]
) -> list[tuple[int, int]]:
    """``(before, after)`` mirror padding per axis: ``margin`` on each side, and up to ``min_size``."""
    margins = margin if isinstance(margin, tuple) else (margin,) * len(sizes)
    widths = []
    for size, pad, target in zip(sizes, margins, min_size):
        extra = max(0, target - (size + 2 * pad))
        widths.append((pad + extra // 2, pad + extra - extra // 2))
    return widths


def pad_mode(sizes: tuple[int, ...]) -> str:
    """numpy's mode for :func:`mirror_pad`: ``reflect``, or ``edge`` when an axis has one pixel."""
    return "reflect" if min(sizes) > 1 else "edge"


def mirror_pad(
    image: np.ndarray, margin: int | tuple[int, ...], min_size: tuple[int, ...]
) -> tuple[np.ndarray, tuple[int, ...]]:
    """Mirror-pad a ``(C, *spatial)`` image by ``margin`` and up to ``min_size``.

    Returns the padded image and the offset of the original in it (``(top, left)``
    in 2D). Padding wider than the image repeats the reflection (numpy's ``reflect``).
    """
    sizes = image.shape[1:]
    widths = pad_widths(sizes, margin, min_size)
    offset = tuple(before for before, _ in widths)
    if not any(before or after for before, after in widths):
        return image, offset
    return np.pad(image, ((0, 0), *widths), mode=pad_mode(sizes)), offset


def source_indices(start: int, stop: int, size: int, mode: str) -> np.ndarray:
    """Which pixel of an axis of ``size`` pixels each position in ``[start, stop)`` shows
    once the axis is padded as numpy's ``np.pad`` does (``reflect``, ``edge``), or -1
    where ``constant`` padding puts a zero. Positions inside the axis map to themselves."""
    positions = np.arange(start, stop)
    if mode == "constant":
        return np.where((positions >= 0) & (positions < size), positions, -1)
    if mode == "edge" or size == 1:
        return np.clip(positions, 0, size - 1)
    period = 2 * (size - 1)  # reflect without repeating the edge pixel: ... 2 1 [0 1 2 ... n-1] n-2 ...
    folded = np.mod(positions, period)
    return np.where(folded < size, folded, period - folded)


def read_padded(image, starts: tuple[int, ...], stops: tuple[int, ...], mode: str) -> np.ndarray:
    """The window ``[starts, stops)`` of a ``(C, *spatial)`` image padded with ``mode``
    (positions may lie outside the image), reading only the part of ``image`` it needs.

    ``image`` is anything that gives a numpy array when sliced (numpy, a memory map, a
    dask or zarr array); the result equals the same window of :func:`mirror_pad`'s output
    (``reflect``/``edge``) or of zero padding (``constant``).
    """
    sizes = image.shape[1:]
    maps = [source_indices(a, b, n, mode) for a, b, n in zip(starts, stops, sizes)]
    inside = [m[m >= 0] for m in maps]
    if any(len(m) == 0 for m in inside):
        return np.zeros((image.shape[0], *(b - a for a, b in zip(starts, stops))), np.float32)
    bounds = tuple(slice(int(m.min()), int(m.max()) + 1) for m in inside)
    window = np.asarray(image[(slice(None), *bounds)])
    for axis, (m, bound) in enumerate(zip(maps, bounds), start=1):
        local = m - bound.start
        if mode == "constant" and (m < 0).any():
            zero = np.zeros_like(np.take(window, [0], axis=axis))
            window = np.concatenate([window, zero], axis=axis)
            local = np.where(m < 0, window.shape[axis] - 1, local)
        if not (len(local) == window.shape[axis] and np.array_equal(local, np.arange(len(local)))):
            window = np.take(window, local, axis=axis)
    return window


def effective_tile(
    image_hw: tuple[int, ...],
    tile: int | tuple[int, ...],
    margin: int | tuple[int, ...],
    overlap_px: int | tuple[int, ...] = 0,
    multiple: int | tuple[int, ...] = 16,
) -> tuple[int, ...]:
    """The tile side per axis: no larger than needed to cover the padded image evenly.

    The number of tiles along an axis is what ``tile`` with ``overlap_px`` needs; the
    tile is then shrunk (to a ``multiple``) so that this many tiles cover the axis with
    no window sticking out further than the overlap asks for. An image smaller than
    one tile gets one tile of its (padded) size.
    """
    n = len(image_hw)

    def per_axis(value):
        return value if isinstance(value, tuple) else (value,) * n

    out = []
    for size, side_max, pad, ov, mult in zip(
        image_hw, per_axis(tile), per_axis(margin), per_axis(overlap_px), per_axis(multiple)
    ):
        needed = size + 2 * pad
        count = 1 if needed <= side_max else math.ceil((needed - ov) / (side_max - ov))
        side = (needed - ov) / count + ov
        out.append(min(side_max, int(math.ceil(side / mult) * mult)))
    return tuple(out)

"""Overlap-tile geometry: tile positions, blending weights, mirror padding.

Small pure functions, shared by 2D prediction of any image size:

* the image is mirror-padded by half the overlap on each side (the U-Net paper's
  overlap-tile strategy: border pixels get context, not zeros), and up to one tile;
* tiles are evenly spaced so the first starts at 0 and the last ends at the border,
  with at least the requested overlap between neighbours (no wasted partial window);
* each tile's logits are weighted by a gaussian (or constant) map and accumulated;
  the sum is divided by the accumulated weights.
"""

from __future__ import annotations

import functools
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
        raise UserInputError(f"overlap must be a number, got {overlap!r}")
    if overlap < 0 or (overlap >= 1 and overlap != int(overlap)):
        raise UserInputError(
            f"overlap must be a fraction in [0, 1) or a whole number of pixels, got {overlap:g}"
        )
    pixels = int(round(overlap * tile)) if overlap < 1 else int(overlap)
    if pixels >= tile:
        raise UserInputError(
            f"overlap of {pixels} px leaves no step between {tile}-px tiles: make it smaller"
        )
    return pixels


def tile_starts(length: int, tile: int, overlap_px: int) -> list[int]:
    """Evenly spaced tile starts covering ``[0, length)`` with ``>= overlap_px`` overlap."""
    if length <= tile:
        return [0]
    step = max(1, tile - overlap_px)
    count = math.ceil((length - tile) / step) + 1
    return sorted({round(i * (length - tile) / (count - 1)) for i in range(count)})


def tile_grid(shape: tuple[int, int], tile: tuple[int, int], overlap_px: int) -> list[tuple[int, int]]:
    """All ``(top, left)`` tile corners for an image of ``shape``."""
    tops = tile_starts(shape[0], tile[0], overlap_px)
    lefts = tile_starts(shape[1], tile[1], overlap_px)
    return [(t, s) for t in tops for s in lefts]


@functools.lru_cache(maxsize=16)
def blend_weights(tile: tuple[int, int], mode: str = "gaussian", sigma_scale: float = 0.125) -> np.ndarray:
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
        weights = np.outer(axes[0], axes[1]).astype(np.float32)
        weights /= weights.max()
        weights = np.maximum(weights, 1e-3)  # the floor MONAI uses: tile corners still count
    else:
        raise ValueError(f"unknown blending {mode!r}")
    weights.flags.writeable = False
    return weights


def mirror_pad(
    image: np.ndarray, margin: int, min_size: tuple[int, int]
) -> tuple[np.ndarray, tuple[int, int]]:
    """Mirror-pad a ``(C, H, W)`` image by ``margin`` and up to ``min_size``.

    Returns the padded image and the ``(top, left)`` offset of the original in it.
    Padding wider than the image repeats the reflection (numpy's ``reflect``).
    """
    _, h, w = image.shape
    extra_h = max(0, min_size[0] - (h + 2 * margin))
    extra_w = max(0, min_size[1] - (w + 2 * margin))
    top, left = margin + extra_h // 2, margin + extra_w // 2
    bottom, right = margin + extra_h - extra_h // 2, margin + extra_w - extra_w // 2
    if not (top or bottom or left or right):
        return image, (0, 0)
    mode = "reflect" if min(h, w) > 1 else "edge"
    padded = np.pad(image, ((0, 0), (top, bottom), (left, right)), mode=mode)
    return padded, (top, left)


def effective_tile(
    image_hw: tuple[int, int], tile: int, margin: int, overlap_px: int = 0, multiple: int = 16
) -> tuple[int, int]:
    """The tile side per axis: no larger than needed to cover the padded image evenly.

    The number of tiles along an axis is what ``tile`` with ``overlap_px`` needs; the
    tile is then shrunk (to a ``multiple``) so that this many tiles cover the axis with
    no window sticking out further than the overlap asks for. An image smaller than
    one tile gets one tile of its (padded) size.
    """
    out = []
    for size in image_hw:
        needed = size + 2 * margin
        count = 1 if needed <= tile else math.ceil((needed - overlap_px) / (tile - overlap_px))
        side = (needed - overlap_px) / count + overlap_px
        out.append(min(tile, int(math.ceil(side / multiple) * multiple)))
    return out[0], out[1]

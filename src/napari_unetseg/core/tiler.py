"""The overlap-tile runner: a network over an image of any size, tile by tile.

:class:`Tiler` holds the settings (tile size, overlap, blending, batch, precision,
device, flips) as MONAI's ``SlidingWindowInferer`` does, and runs a network that is
ready for inference (:func:`~napari_unetseg.core.inference.inference_copy`) over a
normalised ``(C, Y, X)`` image or ``(C, Z, Y, X)`` volume. The geometry (padding, tile
positions, blending weights) is in :mod:`~napari_unetseg.core.tiling`.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Generator
from dataclasses import dataclass

import numpy as np
import torch

from napari_unetseg.core import tiling
from napari_unetseg.core.config import PredictConfig
from napari_unetseg.core.device import autocast, resolve_device, resolve_precision
from napari_unetseg.core.errors import UserInputError
from napari_unetseg.core.events import run_generator
from napari_unetseg.core.inference import channels_last_format

_FLIPS: tuple[tuple[int, ...], ...] = ((), (-1,), (-2,), (-2, -1))


def smaller_batch(batch_size: int, device: torch.device, what: str, size_option: str = "tile_size") -> int:
    """After an out-of-memory error: half the batch (and say so), or give up at 1.

    ``what`` names the batch in the messages; ``size_option`` is the option that makes
    its items smaller (``tile_size``, or ``patch_size`` in training).
    """
    if device.type == "cuda":
        torch.cuda.empty_cache()
    if batch_size <= 1:
        smaller = "tiles" if size_option == "tile_size" else "patches"
        raise UserInputError(
            f"out of memory on {device} even with a {what} of 1",
            (f"use smaller {smaller}", size_option),
            "use a smaller model",
            ("use the CPU", "device"),
        )
    smaller = batch_size // 2
    warnings.warn(f"out of memory on {device}: {what} reduced from {batch_size} to {smaller}", stacklevel=3)
    return smaller


def _forward(model: torch.nn.Module, batch: torch.Tensor, tta: bool) -> torch.Tensor:
    if not tta:
        return model(batch).float()
    total = None
    for dims in _FLIPS:
        flipped = batch.flip(dims) if dims else batch
        out = model(flipped).float()
        out = out.flip(dims) if dims else out
        total = out if total is None else total + out
    return total / len(_FLIPS)


@dataclass(frozen=True)
class Tiler:
    """Overlap-tile settings, and the loop that applies them.

    Parameters
    ----------
    tile_size
        Largest side of the tiles; they are shrunk (to a multiple of 16) to the smallest
        size that covers the image with the same number of tiles.
    overlap
        Shared by neighbouring tiles: a fraction of the tile below 1, else pixels;
        ``None``: 64 px (a quarter of smaller tiles).
    tile_depth
        z side of the tiles of 3D networks.
    batch_size
        Tiles per forward pass (halved, with a warning, after an out-of-memory error).
    blending
        ``gaussian`` or ``constant`` weights of each tile's logits.
    tta
        Average over the four flips.
    precision, device
        Autocast precision (``auto``, ``fp32``, ``bf16``, ``fp16``) and the device the
        network sits on.
    border
        ``reflect``: mirror-pad the image by half the overlap (the U-Net paper's
        overlap-tile); ``constant``: pad with zeros up to one tile only (MONAI's grid).
    """

    # the defaults are PredictConfig's (the one home of every default)
    tile_size: int = PredictConfig.tile_size
    overlap: float | None = PredictConfig.overlap
    tile_depth: int = PredictConfig.tile_depth
    batch_size: int = PredictConfig.batch_size
    blending: str = PredictConfig.blending
    tta: bool = PredictConfig.tta
    precision: str = PredictConfig.precision
    device: torch.device = torch.device("cpu")
    border: str = "reflect"

    @classmethod
    def from_config(cls, config: PredictConfig, device: torch.device | None = None) -> Tiler:
        """The tiler of a :class:`PredictConfig` (``device``: already resolved)."""
        names = {f.name for f in dataclasses.fields(cls)} & {f.name for f in dataclasses.fields(config)}
        settings = {name: getattr(config, name) for name in names - {"device"}}
        return cls(**settings, device=device if device is not None else resolve_device(config.device))

    def __call__(self, model: torch.nn.Module, image: np.ndarray) -> np.ndarray:
        """Blended logits ``(K, ...)`` of ``model`` over ``image`` (see :meth:`iter`)."""
        return run_generator(self.iter(model, image))

    def plan(self, size: tuple[int, ...]) -> TilePlan:
        """The tiles that cover an image of spatial ``size`` (2 axes for a 2D network,
        3 for a 3D one): tile shape, padding and corners (:class:`TilePlan`)."""
        dims = len(size)
        requested = (self.tile_size,) * 2 if dims == 2 else (self.tile_depth, self.tile_size, self.tile_size)
        overlaps = tiling.axis_overlaps(self.overlap, requested)
        reflect = self.border == "reflect"
        margins = tuple(o // 2 for o in overlaps) if reflect else (0,) * dims
        multiple = (16,) * dims if dims == 2 else (1, 16, 16)
        tile = tiling.effective_tile(size, requested, margins, overlaps, multiple)
        if reflect:
            widths, mode = tiling.pad_widths(size, margins, tile), tiling.pad_mode(size)
        else:  # zeros after the image, up to one tile
            widths, mode = [(0, max(0, t - n)) for t, n in zip(tile, size)], "constant"
        offset = tuple(before for before, _ in widths)
        padded = tuple(n + before + after for n, (before, after) in zip(size, widths))
        corners = tiling.tile_grid(padded, tile, overlaps)
        return TilePlan(tuple(size), tile, offset, mode, tuple(corners))

    def iter(self, model: torch.nn.Module, image: np.ndarray) -> Generator[tuple[int, int], None, np.ndarray]:
        """Yield ``(tiles_done, tiles_total)`` after every batch; return the blended logits.

        ``model`` must be ready for inference on :attr:`device` (eval mode, e.g. an
        :func:`~napari_unetseg.core.inference.inference_copy`); ``image`` is ``(C, Y, X)``
        or ``(Y, X)`` for a 2D network, ``(C, Z, Y, X)`` or ``(Z, Y, X)`` for a 3D one.
        """
        image = self._as_image(image, getattr(model, "spatial_dims", 2))
        return (yield from self.iter_region(model, ImageSource(image)))

    def iter_region(
        self, model: torch.nn.Module, source: ImageSource, region: tuple[slice, ...] | None = None
    ) -> Generator[tuple[int, int], None, np.ndarray]:
        """:meth:`iter` over a part of an image: the blended logits ``(K, *region)`` of the
        pixels in ``region`` (slices of the image's spatial axes; all of it by default).

        The tiles are those of the whole image (:meth:`plan`) that overlap ``region``, and
        each pixel sums its tiles' logits in the same order, so a region's logits equal
        the same pixels of the whole image's. Only the input those tiles see is read.
        """
        plan = self.plan(source.shape)
        region = region or tuple(slice(0, n) for n in plan.size)
        corners = plan.covering(region)
        low = tuple(min(c[axis] for c in corners) for axis in range(len(plan.size)))
        high = tuple(max(c[axis] for c in corners) + t for axis, t in enumerate(plan.tile))
        window = source.read(
            tuple(a - o for a, o in zip(low, plan.offset)),
            tuple(b - o for b, o in zip(high, plan.offset)),
            plan.mode,
        )
        local = [tuple(c - a for c, a in zip(corner, low)) for corner in corners]
        source_tensor = torch.from_numpy(np.ascontiguousarray(window)).to(self.device)
        sums = _Accumulator(window.shape[1:], plan.tile, self.blending, self.device)
        memory_format = channels_last_format(model, self.device)
        dtype = resolve_precision(self.precision, self.device)
        batch_size, done = self.batch_size, 0
        while done < len(local):
            chunk = local[done : done + batch_size]
            # inference mode is thread-local: entered per batch, never held across a yield, so
            # a generator abandoned half way (a stopped GUI worker) leaves its thread as it was
            with torch.inference_mode():
                batch = torch.stack([source_tensor[(slice(None), *sums.window(c))] for c in chunk])
                batch = batch.contiguous(memory_format=memory_format)
                try:
                    with autocast(self.device, dtype):
                        out = _forward(model, batch, self.tta)
                except torch.OutOfMemoryError:
                    out = None
                if out is not None:
                    sums.add(chunk, out)
            if out is None:
                del batch
                batch_size = smaller_batch(batch_size, self.device, "tile batch")
                continue
            done += len(chunk)
            yield done, len(local)
        crop = tuple(slice(r.start + o - a, r.stop + o - a) for r, o, a in zip(region, plan.offset, low))
        return sums.result(crop)

    @staticmethod
    def _as_image(image: np.ndarray, dims: int) -> np.ndarray:
        image = np.asarray(image, dtype=np.float32)
        if image.ndim == dims:
            image = image[None]
        if image.ndim != dims + 1:
            expected = "(C, H, W) or (H, W)" if dims == 2 else "(C, Z, Y, X) or (Z, Y, X)"
            raise UserInputError(f"expected a {expected} image, got shape {image.shape}")
        return image


@dataclass(frozen=True)
class TilePlan:
    """The tiles of one image: its spatial ``size``, the ``tile`` shape, where the image
    starts in the padded frame (``offset``), how it is padded (``mode``: ``reflect``,
    ``edge`` or ``constant``) and the tile ``corners`` in the padded frame."""

    size: tuple[int, ...]
    tile: tuple[int, ...]
    offset: tuple[int, ...]
    mode: str
    corners: tuple[tuple[int, ...], ...]

    def covering(self, region: tuple[slice, ...]) -> list[tuple[int, ...]]:
        """The corners of the tiles that overlap ``region`` (image coordinates), in plan order."""
        bounds = [(r.start + o, r.stop + o) for r, o in zip(region, self.offset)]
        return [
            c
            for c in self.corners
            if all(start < c[axis] + t and c[axis] < stop for axis, ((start, stop), t) in
                   enumerate(zip(bounds, self.tile)))
        ]  # fmt: skip


class ImageSource:
    """A ``(C, *spatial)`` image as :meth:`Tiler.iter_region` reads it: padded windows,
    normalised with per-channel ``low``/``high`` values when they are given.

    ``image`` may be lazy (a memory map, a dask or zarr array): only the windows asked
    for are read. ``channels_second`` takes a ``(Z, C, Y, X)`` array (a stack) as the
    ``(C, Z, Y, X)`` volume of a 3D network.
    """

    def __init__(self, image, low=None, high=None, channels_second: bool = False) -> None:
        self.image, self.low, self.high, self.channels_second = image, low, high, channels_second
        shape = image.shape
        self.shape = (shape[0], *shape[2:]) if channels_second else tuple(shape[1:])

    def read(self, starts: tuple[int, ...], stops: tuple[int, ...], mode: str) -> np.ndarray:
        """The normalised float32 window ``[starts, stops)``, padded with ``mode`` beyond the image."""
        image = _ChannelsFirst(self.image) if self.channels_second else self.image
        window = tiling.read_padded(image, starts, stops, mode)
        if self.low is None:
            return np.asarray(window, dtype=np.float32)
        from napari_unetseg.core.normalization import Normalization

        if self.channels_second or window.ndim == 4:
            window = np.moveaxis(window, 0, 1)  # (Z, C, Y, X): channels where apply expects them
            return np.ascontiguousarray(np.moveaxis(Normalization.apply(window, self.low, self.high), 1, 0))
        return Normalization.apply(window, self.low, self.high)


class _ChannelsFirst:
    """A ``(Z, C, Y, X)`` array indexed as ``(C, Z, Y, X)`` (reads only what is sliced)."""

    def __init__(self, array) -> None:
        self.array = array
        z, c, *rest = array.shape
        self.shape = (c, z, *rest)

    def __getitem__(self, index: tuple[slice, ...]) -> np.ndarray:
        channels, z, *rest = index
        return np.moveaxis(np.asarray(self.array[(z, channels, *rest)]), 1, 0)


class _Accumulator:
    """Weighted sums of tile logits over the padded image, and the weights' sum."""

    def __init__(self, shape: tuple[int, ...], tile: tuple[int, ...], blending: str, device) -> None:
        self.tile = tile
        self.weights = torch.from_numpy(tiling.blend_weights(tile, blending).copy()).to(device)
        self.scores: torch.Tensor | None = None
        self.weight_sum = torch.zeros(shape, device=device)

    def window(self, corner: tuple[int, ...]) -> tuple[slice, ...]:
        return tuple(slice(c, c + t) for c, t in zip(corner, self.tile))

    def add(self, corners: list[tuple[int, ...]], logits: torch.Tensor) -> None:
        if self.scores is None:
            self.scores = torch.zeros((logits.shape[1], *self.weight_sum.shape), device=logits.device)
        for corner, tile_logits in zip(corners, logits):
            self.scores[(slice(None), *self.window(corner))] += tile_logits * self.weights
            self.weight_sum[self.window(corner)] += self.weights

    def result(self, crop: tuple[slice, ...]) -> np.ndarray:
        with torch.inference_mode():
            return (self.scores[(slice(None), *crop)] / self.weight_sum[crop]).cpu().numpy()

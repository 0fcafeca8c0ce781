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
from napari_unetseg.core.inference import channels_last_format, uses_channels_last

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

    def iter(self, model: torch.nn.Module, image: np.ndarray) -> Generator[tuple[int, int], None, np.ndarray]:
        """Yield ``(tiles_done, tiles_total)`` after every batch; return the blended logits.

        ``model`` must be ready for inference on :attr:`device` (eval mode, e.g. an
        :func:`~napari_unetseg.core.inference.inference_copy`); ``image`` is ``(C, Y, X)``
        or ``(Y, X)`` for a 2D network, ``(C, Z, Y, X)`` or ``(Z, Y, X)`` for a 3D one.
        """
        dims = getattr(model, "spatial_dims", 2)
        image = self._as_image(image, dims)
        requested = (self.tile_size,) * 2 if dims == 2 else (self.tile_depth, self.tile_size, self.tile_size)
        overlaps = tiling.axis_overlaps(self.overlap, requested)
        reflect = self.border == "reflect"
        margins = tuple(o // 2 for o in overlaps) if reflect else (0,) * dims
        size = image.shape[1:]
        tile = tiling.effective_tile(
            size, requested, margins, overlaps, (16,) * dims if dims == 2 else (1, 16, 16)
        )
        padded, offset = tiling.mirror_pad(image, margins, tile) if reflect else _zero_pad(image, tile)
        corners = tiling.tile_grid(padded.shape[1:], tile, overlaps)
        source = torch.from_numpy(np.ascontiguousarray(padded)).to(self.device)
        sums = _Accumulator(padded.shape[1:], tile, self.blending, self.device)
        memory_format = (
            channels_last_format(model) if uses_channels_last(self.device) else torch.contiguous_format
        )
        dtype = resolve_precision(self.precision, self.device)
        batch_size, done = self.batch_size, 0
        while done < len(corners):
            chunk = corners[done : done + batch_size]
            # inference mode is thread-local: entered per batch, never held across a yield, so
            # a generator abandoned half way (a stopped GUI worker) leaves its thread as it was
            with torch.inference_mode():
                batch = torch.stack([source[(slice(None), *sums.window(c))] for c in chunk])
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
            yield done, len(corners)
        return sums.result(offset, size)

    @staticmethod
    def _as_image(image: np.ndarray, dims: int) -> np.ndarray:
        image = np.asarray(image, dtype=np.float32)
        if image.ndim == dims:
            image = image[None]
        if image.ndim != dims + 1:
            expected = "(C, H, W) or (H, W)" if dims == 2 else "(C, Z, Y, X) or (Z, Y, X)"
            raise UserInputError(f"expected a {expected} image, got shape {image.shape}")
        return image


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

    def result(self, offset: tuple[int, ...], size: tuple[int, ...]) -> np.ndarray:
        with torch.inference_mode():
            crop = tuple(slice(o, o + n) for o, n in zip(offset, size))
            return (self.scores / self.weight_sum)[(slice(None), *crop)].cpu().numpy()


def _zero_pad(image: np.ndarray, tile: tuple[int, ...]) -> tuple[np.ndarray, tuple[int, ...]]:
    pads = [max(0, t - n) for t, n in zip(tile, image.shape[1:])]
    offset = (0,) * len(pads)
    if not any(pads):
        return image, offset
    return np.pad(image, ((0, 0), *((0, p) for p in pads))), offset

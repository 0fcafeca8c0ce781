"""Tiled prediction: overlap-tile with mirror padding and weighted blending.

:func:`predict_tiled` is the stable low-level entry point (any ``nn.Module``, one 2D
image, returns blended per-class scores). :func:`iter_predict` predicts a whole stack
with a model file's recipe and yields progress; :func:`predict_stack` runs it.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from napari_unetseg.core import tiling
from napari_unetseg.core.checkpoint import LoadedModel
from napari_unetseg.core.config import PredictConfig
from napari_unetseg.core.data import check_image_size
from napari_unetseg.core.device import autocast, resolve_device, resolve_precision
from napari_unetseg.core.errors import UserInputError
from napari_unetseg.core.events import PredictProgress, run_generator
from napari_unetseg.core.inference import inference_copy, uses_channels_last

_FLIPS: tuple[tuple[int, ...], ...] = ((), (-1,), (-2,), (-2, -1))


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


def smaller_batch(batch_size: int, device: torch.device, what: str) -> int:
    """After an out-of-memory error: half the batch (and say so), or give up at 1."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
    if batch_size <= 1:
        raise UserInputError(
            f"out of memory on {device} even with a {what} of 1: use smaller tiles or patches, "
            "a smaller model, or --device cpu"
        )
    smaller = batch_size // 2
    warnings.warn(f"out of memory on {device}: {what} reduced from {batch_size} to {smaller}", stacklevel=3)
    return smaller


def iter_tiled(
    model: torch.nn.Module,
    image: np.ndarray,
    tile_size: int = 1024,
    overlap: float | None = None,
    *,
    blending: str = "gaussian",
    batch_size: int = 4,
    precision: str = "auto",
    device: str | torch.device = "auto",
    tta: bool = False,
    border: str = "reflect",
) -> Generator[tuple[int, int], None, np.ndarray]:
    """Generator form of :func:`predict_tiled`: yields ``(tiles_done, tiles_total)``."""
    dev = device if isinstance(device, torch.device) else resolve_device(device)
    fast = inference_copy(model, dev)
    return (
        yield from _iter_tiles(
            fast,
            image,
            tile_size,
            overlap,
            blending=blending,
            batch_size=batch_size,
            precision=precision,
            device=dev,
            tta=tta,
            border=border,
        )
    )


def _iter_tiles(
    model: torch.nn.Module,
    image: np.ndarray,
    tile_size: int,
    overlap: float,
    *,
    blending: str,
    batch_size: int,
    precision: str,
    device: torch.device,
    tta: bool,
    border: str,
) -> Generator[tuple[int, int], None, np.ndarray]:
    """:func:`iter_tiled` for a model already made ready by :func:`inference_copy`."""
    image = np.asarray(image, dtype=np.float32)
    if image.ndim == 2:
        image = image[None]
    if image.ndim != 3:
        raise UserInputError(f"expected a (C, H, W) or (H, W) image, got shape {image.shape}")
    overlap_px = tiling.overlap_pixels(overlap, tile_size)
    dtype = resolve_precision(precision, device)
    memory_format = torch.channels_last if uses_channels_last(device) else torch.contiguous_format
    margin = overlap_px // 2 if border == "reflect" else 0
    _, h, w = image.shape
    tile = tiling.effective_tile((h, w), tile_size, margin, overlap_px)
    if border == "reflect":
        padded, (top, left) = tiling.mirror_pad(image, margin, tile)
    else:
        padded, (top, left) = _zero_pad(image, tile)
    corners = tiling.tile_grid(padded.shape[1:], tile, overlap_px)
    weights = torch.from_numpy(tiling.blend_weights(tile, blending).copy()).to(device)
    source = torch.from_numpy(np.ascontiguousarray(padded)).to(device)
    scores = None
    weight_sum = torch.zeros(padded.shape[1:], device=device)
    th, tw = tile
    done = 0
    with torch.inference_mode():
        while done < len(corners):
            chunk = corners[done : done + batch_size]
            batch = torch.stack([source[:, t : t + th, s : s + tw] for t, s in chunk])
            batch = batch.contiguous(memory_format=memory_format)
            try:
                with autocast(device, dtype):
                    out = _forward(model, batch, tta)
            except torch.OutOfMemoryError:
                del batch
                batch_size = smaller_batch(batch_size, device, "tile batch")
                continue
            if scores is None:
                scores = torch.zeros((out.shape[1], *padded.shape[1:]), device=device)
            for (t, s), logits in zip(chunk, out):
                scores[:, t : t + th, s : s + tw] += logits * weights
                weight_sum[t : t + th, s : s + tw] += weights
            done += len(chunk)
            yield done, len(corners)
    result = scores / weight_sum
    return result[:, top : top + h, left : left + w].cpu().numpy()


def _zero_pad(image: np.ndarray, tile: tuple[int, int]) -> tuple[np.ndarray, tuple[int, int]]:
    _, h, w = image.shape
    ph, pw = max(0, tile[0] - h), max(0, tile[1] - w)
    if not (ph or pw):
        return image, (0, 0)
    return np.pad(image, ((0, 0), (0, ph), (0, pw))), (0, 0)


def predict_tiled(
    model: torch.nn.Module,
    image: np.ndarray,
    tile_size: int = 1024,
    overlap: float | None = None,
    *,
    progress: Callable[[int, int], None] | None = None,
    **options,
) -> np.ndarray:
    """Blended per-class scores ``(K, H, W)`` of ``model`` over a ``(C, H, W)``/``(H, W)`` image.

    Parameters
    ----------
    model
        Any module mapping ``(B, C, h, w)`` to ``(B, K, h, w)`` logits.
    image
        The (already normalised) image.
    tile_size
        Largest side of the square tiles. The tiles actually used are shrunk (to a
        multiple of 16) to the smallest size that covers the image with the same
        number of tiles, so no window sticks out further than it must.
    overlap
        Shared by neighbouring tiles: a fraction of ``tile_size`` below 1 (MONAI's
        convention), else a whole number of pixels; ``None``: 64 px (a quarter of
        smaller tiles).
    progress
        Called with ``(tiles_done, tiles_total)`` after every batch.
    **options
        ``blending='gaussian'|'constant'``, ``batch_size``, ``precision='auto'|'fp32'|
        'bf16'|'fp16'``, ``device='auto'|'cpu'|'cuda'|'mps'``, ``tta`` (average over
        flips), ``border='reflect'|'constant'`` (mirror padding or zeros at the edges).

    Returns
    -------
    numpy.ndarray
        float32 logits blended over tiles (softmax them for probabilities).
    """
    gen = iter_tiled(model, image, tile_size, overlap, **options)
    return run_generator(gen, (lambda event: progress(*event)) if progress else None)


@dataclass
class PredictionResult:
    """Labels ``(N, Y, X)`` in annotation numbering, optional probabilities ``(N, K, Y, X)``
    (or the ``labels_out``/``probabilities_out`` they were written to)."""

    labels: np.ndarray
    probabilities: np.ndarray | None = None


def labels_dtype(class_values: tuple[int, ...]) -> np.dtype:
    """The smallest unsigned dtype holding every class value."""
    top = max(class_values)
    return np.dtype(np.uint8 if top < 2**8 else np.uint16 if top < 2**16 else np.uint32)


def iter_predict(
    loaded: LoadedModel,
    stack: np.ndarray,
    config: PredictConfig | None = None,
    probabilities: bool = False,
    slices: Sequence[int] | None = None,
    labels_out=None,
    probabilities_out=None,
) -> Generator[PredictProgress, None, PredictionResult]:
    """Predict a ``(N, C, Y, X)`` stack slice by slice with a model file's recipe.

    The stack is normalised with its own percentiles (the recipe from the model file);
    each slice is predicted with :func:`iter_tiled`. Yields :class:`PredictProgress`.
    ``slices`` predicts only those slice indices (normalised with the whole stack's
    percentiles all the same); the result then holds ``len(slices)`` slices.

    The stack may be anything that gives a numpy slice when indexed (numpy, a memory
    map, dask, zarr): one slice is read at a time. ``labels_out`` and
    ``probabilities_out`` take the results instead of new in-memory arrays: anything
    that accepts ``out[i] = slab`` (e.g. :class:`~napari_unetseg.core.io.TiffSliceWriter`),
    so memory holds one slice's scores however big the stack.
    """
    config = config or PredictConfig()
    if stack.ndim != 4:
        raise UserInputError(f"expected a (N, C, Y, X) stack, got shape {stack.shape}")
    check_image_size(stack)
    if stack.shape[1] != loaded.spec.in_channels:
        raise UserInputError(
            f"the image has {stack.shape[1]} channel(s) but the model expects "
            f"{loaded.spec.in_channels}: check the image axes (--axes) or use a model trained on such images"
        )
    device = resolve_device(config.device)
    fast = inference_copy(loaded.model, device)
    lo, hi = loaded.normalization.percentiles(stack)
    lut = np.asarray(loaded.class_values, dtype=labels_dtype(loaded.class_values))
    indices = list(range(stack.shape[0])) if slices is None else [int(i) for i in slices]
    if any(not 0 <= i < stack.shape[0] for i in indices):
        raise UserInputError(f"slice indices {indices} out of range for a stack of {stack.shape[0]} slices")
    n = len(indices)
    labels = np.zeros((n, *stack.shape[2:]), lut.dtype) if labels_out is None else labels_out
    probs = None
    if probabilities:
        probs = probabilities_out
        if probs is None:
            probs = np.zeros((n, len(lut), *stack.shape[2:]), np.float32)
    options = dict(
        blending=config.blending,
        batch_size=config.batch_size,
        precision=config.precision,
        device=device,
        tta=config.tta,
    )
    for index, source in enumerate(indices):
        image = loaded.normalization.apply(np.asarray(stack[source]), lo, hi)
        gen = _iter_tiles(fast, image, config.tile_size, config.overlap, border="reflect", **options)
        while True:
            try:
                done, total = next(gen)
            except StopIteration as stop:
                scores = stop.value
                break
            yield PredictProgress(done=done, total=total, slice_index=index, n_slices=n)
        labels[index] = lut[scores.argmax(0)]
        if probs is not None:
            probs[index] = torch.softmax(torch.from_numpy(scores), 0).numpy()
    return PredictionResult(labels=labels, probabilities=probs)


def predict_stack(
    loaded: LoadedModel,
    stack: np.ndarray,
    config: PredictConfig | None = None,
    probabilities: bool = False,
    slices: Sequence[int] | None = None,
    **outputs,
) -> PredictionResult:
    """Run :func:`iter_predict` to the end (``outputs``: ``labels_out``, ``probabilities_out``)."""
    return run_generator(iter_predict(loaded, stack, config, probabilities, slices, **outputs))

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
    tile_depth: int = 32,
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
            tile_depth=tile_depth,
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
    tile_depth: int = 32,
) -> Generator[tuple[int, int], None, np.ndarray]:
    """:func:`iter_tiled` for a model already made ready by :func:`inference_copy`."""
    dims = getattr(model, "spatial_dims", 2)
    image = np.asarray(image, dtype=np.float32)
    if image.ndim == dims:
        image = image[None]
    if image.ndim != dims + 1:
        expected = "(C, H, W) or (H, W)" if dims == 2 else "(C, Z, Y, X) or (Z, Y, X)"
        raise UserInputError(f"expected a {expected} image, got shape {image.shape}")
    requested = (tile_size,) * 2 if dims == 2 else (tile_depth, tile_size, tile_size)
    overlaps = tiling.axis_overlaps(overlap, requested)
    dtype = resolve_precision(precision, device)
    memory_format = _memory_format(dims) if uses_channels_last(device) else torch.contiguous_format
    margins = tuple(o // 2 for o in overlaps) if border == "reflect" else (0,) * dims
    size = image.shape[1:]
    multiples = (16,) * dims if dims == 2 else (1, 16, 16)
    tile = tiling.effective_tile(size, requested, margins, overlaps, multiples)
    if border == "reflect":
        padded, offset = tiling.mirror_pad(image, margins, tile)
    else:
        padded, offset = _zero_pad(image, tile)
    corners = tiling.tile_grid(padded.shape[1:], tile, overlaps)
    weights = torch.from_numpy(tiling.blend_weights(tile, blending).copy()).to(device)
    source = torch.from_numpy(np.ascontiguousarray(padded)).to(device)
    scores = None
    weight_sum = torch.zeros(padded.shape[1:], device=device)

    def window(corner: tuple[int, ...]) -> tuple[slice, ...]:
        return tuple(slice(c, c + t) for c, t in zip(corner, tile))

    # Inference mode is thread-local state: it is entered per tile batch and never held across
    # a ``yield``, so a generator that is abandoned half way (a stopped GUI worker) cannot leave
    # its pooled thread without gradients.
    done = 0
    while done < len(corners):
        chunk = corners[done : done + batch_size]
        with torch.inference_mode():
            batch = torch.stack([source[(slice(None), *window(c))] for c in chunk])
            batch = batch.contiguous(memory_format=memory_format)
            try:
                with autocast(device, dtype):
                    out = _forward(model, batch, tta)
            except torch.OutOfMemoryError:
                out = None
            if out is not None:
                if scores is None:
                    scores = torch.zeros((out.shape[1], *padded.shape[1:]), device=device)
                for corner, logits in zip(chunk, out):
                    scores[(slice(None), *window(corner))] += logits * weights
                    weight_sum[window(corner)] += weights
        if out is None:
            del batch
            batch_size = smaller_batch(batch_size, device, "tile batch")
            continue
        done += len(chunk)
        yield done, len(corners)
    with torch.inference_mode():
        result = scores / weight_sum
        crop = tuple(slice(o, o + n) for o, n in zip(offset, size))
        return result[(slice(None), *crop)].cpu().numpy()


def _memory_format(dims: int) -> torch.memory_format:
    return torch.channels_last if dims == 2 else torch.channels_last_3d


def _zero_pad(image: np.ndarray, tile: tuple[int, ...]) -> tuple[np.ndarray, tuple[int, ...]]:
    pads = [max(0, t - n) for t, n in zip(tile, image.shape[1:])]
    offset = (0,) * len(pads)
    if not any(pads):
        return image, offset
    return np.pad(image, ((0, 0), *((0, p) for p in pads))), offset


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

    A 3D network (``model.spatial_dims == 3``) takes a ``(C, Z, Y, X)``/``(Z, Y, X)``
    volume, tiled in 3D with ``tile_depth`` slices per tile, and returns ``(K, Z, Y, X)``.

    Parameters
    ----------
    model
        Any module mapping ``(B, C, h, w)`` to ``(B, K, h, w)`` logits (or the 3D
        equivalent, with a ``spatial_dims = 3`` attribute).
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
        flips), ``border='reflect'|'constant'`` (mirror padding or zeros at the edges),
        ``tile_depth`` (3D networks: z side of the tiles, default 32).

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
    loaded: LoadedModel | Sequence[LoadedModel],
    stack: np.ndarray,
    config: PredictConfig | None = None,
    probabilities: bool = False,
    slices: Sequence[int] | None = None,
    labels_out=None,
    probabilities_out=None,
) -> Generator[PredictProgress, None, PredictionResult]:
    """Predict a ``(N, C, Y, X)`` stack with a model file's recipe.

    The stack is normalised with its own percentiles (the recipe from the model file);
    a 2D model predicts each slice with :func:`iter_tiled`, a 3D model the stack as one
    ``(C, Z, Y, X)`` volume in 3D tiles. Yields :class:`PredictProgress`.
    ``slices`` predicts only those slice indices (normalised with the whole stack's
    percentiles all the same); the result then holds ``len(slices)`` slices.

    Several models (an ensemble: e.g. one recipe trained with different seeds, which
    must share their classes and input channels) each predict with their own recipe
    and their class probabilities are averaged; the labels are the most probable class
    of the average.

    The stack may be anything that gives a numpy slice when indexed (numpy, a memory
    map, dask, zarr): one slice is read at a time. ``labels_out`` and
    ``probabilities_out`` take the results instead of new in-memory arrays: anything
    that accepts ``out[i] = slab`` (e.g. :class:`~napari_unetseg.core.io.TiffSliceWriter`),
    so memory holds one slice's scores however big the stack (2D models; a 3D model
    holds the volume and its scores).
    """
    config = config or PredictConfig()
    models = [loaded] if isinstance(loaded, LoadedModel) else list(loaded)
    check_ensemble(models)
    lead = models[0]
    if stack.ndim != 4:
        raise UserInputError(f"expected a (N, C, Y, X) stack, got shape {stack.shape}")
    check_image_size(stack)
    if stack.shape[1] != lead.spec.in_channels:
        raise UserInputError(
            f"the image has {stack.shape[1]} channel(s) but the model expects {lead.spec.in_channels}: "
            "check the image axes (--axes) or use a model trained on such images"
        )
    device = resolve_device(config.device)
    lut = np.asarray(lead.class_values, dtype=labels_dtype(lead.class_values))
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
        tile_depth=config.tile_depth,
        border="reflect",
    )
    # per model: its inference copy and its jobs (lazy: no slice is read yet); members with
    # the same normalisation recipe share its percentiles (which read up to 64 slices)
    recipes = dict.fromkeys(m.normalization for m in models)
    bounds = {recipe: recipe.percentiles(stack) for recipe in recipes}
    runs = [
        (
            m,
            inference_copy(m.model, device),
            _jobs(m, stack, indices, *bounds[m.normalization], config.tile_depth),
        )
        for m in models
    ]
    n_jobs = len(runs[0][2])
    for number in range(n_jobs):
        # (K, Z, Y, X): the members' averaged class probabilities; one model's corrected
        # logits when no probabilities are asked for (same argmax, no softmax to pay for)
        combined = None
        for rank, (model, fast, jobs) in enumerate(runs):
            first, volume, targets = jobs[number]
            gen = _iter_tiles(fast, volume(), config.tile_size, config.overlap, **options)
            while True:
                try:
                    done, total = next(gen)
                except StopIteration as stop:
                    scores = stop.value
                    break
                # a 3D model runs one job (the volume): progress counts its tiles; an
                # ensemble counts the tiles of all its models
                yield PredictProgress(
                    done=rank * total + done, total=len(runs) * total, slice_index=number, n_slices=n_jobs
                )
            if scores.ndim == 3:  # one slice: (K, Y, X) scores
                scores = scores[:, None]
            scores = model.adjust(scores)  # class-prior correction, if any
            if len(runs) > 1 or probs is not None:
                scores = torch.softmax(torch.from_numpy(scores), 0).numpy() / len(runs)
            combined = scores if combined is None else combined + scores
        for index, source in targets:
            slab = combined[:, source - first]
            labels[index] = lut[slab.argmax(0)]
            if probs is not None:
                probs[index] = slab
    return PredictionResult(labels=labels, probabilities=probs)


def check_ensemble(models: Sequence[LoadedModel]) -> None:
    """Refuse an empty list, or models that cannot be averaged (different classes,
    input channels or 2D/3D)."""
    if not models:
        raise UserInputError("no model to predict with")
    first = models[0]
    dims = getattr(first.model, "spatial_dims", 2)
    for other in models[1:]:
        if tuple(other.class_values) != tuple(first.class_values):
            raise UserInputError(
                f"the models predict different classes ({list(first.class_values)} and "
                f"{list(other.class_values)}): an ensemble needs models trained on the same classes"
            )
        if other.spec.in_channels != first.spec.in_channels:
            raise UserInputError(
                f"the models take different channel counts ({first.spec.in_channels} and "
                f"{other.spec.in_channels}): an ensemble needs models trained on the same kind of image"
            )
        if getattr(other.model, "spatial_dims", 2) != dims:
            raise UserInputError("an ensemble cannot mix 2D and 3D models")


def _jobs(loaded: LoadedModel, stack, indices: list[int], lo, hi, tile_depth: int) -> list:
    """What to run the network on: a list of ``(first slice, read normalised input,
    [(output index, source slice)])``. 2D models: one slice at a time. 3D models: one
    volume ``(C, Z, Y, X)``: the whole stack, or the slab around the requested slices
    with half a z tile of context on each side. Inputs are read when called, normalised
    with ``loaded``'s recipe and the whole stack's percentiles ``lo``, ``hi``."""
    volumes = getattr(loaded.model, "spatial_dims", 2) == 3

    def read(first: int, last: int) -> Callable[[], np.ndarray]:
        def load() -> np.ndarray:
            if not volumes:
                return loaded.normalization.apply(np.asarray(stack[first]), lo, hi)
            slab = loaded.normalization.apply(np.asarray(stack[first:last]), lo, hi)
            return np.moveaxis(slab, 1, 0)

        return load

    if not volumes:
        return [(source, read(source, source + 1), [(index, source)]) for index, source in enumerate(indices)]
    context = tile_depth // 2
    first = max(0, min(indices) - context)
    last = min(stack.shape[0], max(indices) + context + 1)
    return [(first, read(first, last), list(enumerate(indices)))]


def predict_stack(
    loaded: LoadedModel | Sequence[LoadedModel],
    stack: np.ndarray,
    config: PredictConfig | None = None,
    probabilities: bool = False,
    slices: Sequence[int] | None = None,
    **outputs,
) -> PredictionResult:
    """Run :func:`iter_predict` to the end (``outputs``: ``labels_out``, ``probabilities_out``)."""
    return run_generator(iter_predict(loaded, stack, config, probabilities, slices, **outputs))

"""Prediction of whole stacks with model files' recipes, alone or as an ensemble.

:func:`iter_predict` is the one way into prediction for the CLI and the Predict dock:
it normalises the stack with each model's recipe, runs its
:class:`~napari_unetseg.core.tiler.Tiler` slice by slice (or over the volume, for 3D
models) and yields progress; :func:`predict_stack` runs it to the end.
:func:`predict_tiled` is the stable low-level entry point (any ``nn.Module``, one
normalised image, blended per-class scores).
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch

from napari_unetseg.core.checkpoint import LoadedModel
from napari_unetseg.core.class_names import labels_dtype
from napari_unetseg.core.config import PredictConfig
from napari_unetseg.core.data import check_image_size
from napari_unetseg.core.device import resolve_device
from napari_unetseg.core.errors import UserInputError
from napari_unetseg.core.events import PredictProgress, run_generator
from napari_unetseg.core.inference import inference_copy
from napari_unetseg.core.tiler import Tiler, smaller_batch

__all__ = [
    "PredictionResult",
    "check_ensemble",
    "iter_predict",
    "iter_tiled",
    "labels_dtype",
    "predict_stack",
    "predict_tiled",
    "smaller_batch",
]


def iter_tiled(
    model: torch.nn.Module,
    image: np.ndarray,
    tile_size: int = PredictConfig.tile_size,
    overlap: float | None = PredictConfig.overlap,
    **options,
) -> Generator[tuple[int, int], None, np.ndarray]:
    """Generator form of :func:`predict_tiled`: yields ``(tiles_done, tiles_total)``."""
    device = options.pop("device", "auto")
    device = device if isinstance(device, torch.device) else resolve_device(device)
    tiler = Tiler(tile_size=tile_size, overlap=overlap, device=device, **options)
    return (yield from tiler.iter(inference_copy(model, device), image))


def predict_tiled(
    model: torch.nn.Module,
    image: np.ndarray,
    tile_size: int = PredictConfig.tile_size,
    overlap: float | None = PredictConfig.overlap,
    *,
    progress: Callable[[int, int], None] | None = None,
    **options,
) -> np.ndarray:
    """Blended per-class scores ``(K, H, W)`` of ``model`` over a ``(C, H, W)``/``(H, W)`` image.

    A 3D network (``model.spatial_dims == 3``) takes a ``(C, Z, Y, X)``/``(Z, Y, X)``
    volume and returns ``(K, Z, Y, X)``. The caller's model is not changed: it runs as
    an inference copy (BatchNorm folded, channels-last).

    Parameters
    ----------
    model
        Any module mapping ``(B, C, h, w)`` to ``(B, K, h, w)`` logits (or the 3D
        equivalent, with a ``spatial_dims = 3`` attribute).
    image
        The (already normalised) image.
    tile_size, overlap
        As in :class:`~napari_unetseg.core.tiler.Tiler`.
    progress
        Called with ``(tiles_done, tiles_total)`` after every batch.
    **options
        The other :class:`~napari_unetseg.core.tiler.Tiler` fields (``blending``,
        ``batch_size``, ``precision``, ``tta``, ``border``, ``tile_depth``) and
        ``device='auto'|'cpu'|'cuda'|'mps'``.

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
                f"{list(other.class_values)})",
                "an ensemble needs models trained on the same classes",
            )
        if other.spec.in_channels != first.spec.in_channels:
            raise UserInputError(
                f"the models take different channel counts ({first.spec.in_channels} and "
                f"{other.spec.in_channels})",
                "an ensemble needs models trained on the same kind of image",
            )
        if getattr(other.model, "spatial_dims", 2) != dims:
            raise UserInputError("an ensemble cannot mix 2D and 3D models")


def iter_predict(
    loaded: LoadedModel | Sequence[LoadedModel],
    stack: np.ndarray,
    config: PredictConfig | None = None,
    probabilities: bool = False,
    slices: Sequence[int] | None = None,
    labels_out=None,
    probabilities_out=None,
) -> Generator[PredictProgress, None, PredictionResult]:
    """Predict a ``(N, C, Y, X)`` stack with one model file's recipe, or an ensemble's.

    A 2D model predicts each slice, normalised from its own percentiles (each model's
    recipe, :mod:`~napari_unetseg.core.normalization`), so a slice gets the same labels
    alone or inside its stack; a 3D model predicts the stack as one ``(C, Z, Y, X)``
    volume in 3D tiles, normalised from the volume's percentiles. Yields
    :class:`PredictProgress`. ``slices`` predicts only those slice indices (a 3D model
    still normalises with the whole stack's percentiles); the result then holds
    ``len(slices)`` slices.

    Several models (an ensemble, e.g. one recipe trained with different seeds; they
    must share classes, input channels and 2D/3D) each predict with their own recipe
    and class-prior correction; their class probabilities are averaged and the labels
    are the most probable class of the average.

    The stack may be anything that gives a numpy slice when indexed (numpy, a memory
    map, dask, zarr): one slice is read at a time. ``labels_out`` and
    ``probabilities_out`` take the results instead of new in-memory arrays: anything
    that accepts ``out[i] = slab`` (e.g. :class:`~napari_unetseg.core.io.TiffSliceWriter`),
    so memory holds one slice's scores however big the stack (2D models; a 3D model
    holds the volume and its scores).
    """
    config = config or PredictConfig()
    models = [loaded] if isinstance(loaded, LoadedModel) else list(loaded)
    indices = _check_input(models, stack, slices)
    device = resolve_device(config.device)
    tiler = Tiler.from_config(config, device)
    lut = np.asarray(models[0].class_values, dtype=labels_dtype(models[0].class_values))
    n = len(indices)
    labels = np.zeros((n, *stack.shape[2:]), lut.dtype) if labels_out is None else labels_out
    probs = probabilities_out if probabilities else None
    if probabilities and probs is None:
        probs = np.zeros((n, len(lut), *stack.shape[2:]), np.float32)
    members = [
        (m, inference_copy(m.model, device), _jobs(m, stack, indices, config.tile_depth)) for m in models
    ]
    n_jobs = len(members[0][2])
    softmax = len(members) > 1 or probs is not None
    for number in range(n_jobs):
        combined = None  # (K, Z, Y, X): the members' averaged probabilities, or one model's scores
        for rank, (model, fast, jobs) in enumerate(members):
            first, volume, targets = jobs[number]
            scores = yield from _member_scores(tiler, fast, volume(), rank, len(members), number, n_jobs)
            scores = model.adjust(scores)  # class-prior correction, if any
            if softmax:  # one model without probabilities: its argmax needs no softmax
                scores = torch.softmax(torch.from_numpy(scores), 0).numpy() / len(members)
            combined = scores if combined is None else combined + scores
        for index, source in targets:
            slab = combined[:, source - first]
            labels[index] = lut[slab.argmax(0)]
            if probs is not None:
                probs[index] = slab
    return PredictionResult(labels=labels, probabilities=probs)


def _check_input(models: list[LoadedModel], stack, slices: Sequence[int] | None) -> list[int]:
    """Refuse what the models cannot predict; the indices of the slices to predict."""
    check_ensemble(models)
    if stack.ndim != 4:
        raise UserInputError(f"expected a (N, C, Y, X) stack, got shape {stack.shape}")
    check_image_size(stack)
    expected = models[0].spec.in_channels
    if stack.shape[1] != expected:
        raise UserInputError(
            f"the image has {stack.shape[1]} channel(s) but the model expects {expected}",
            ("check the image axes", "axes"),
            "use a model trained on such images",
        )
    indices = list(range(stack.shape[0])) if slices is None else [int(i) for i in slices]
    if any(not 0 <= i < stack.shape[0] for i in indices):
        raise UserInputError(f"slice indices {indices} out of range for a stack of {stack.shape[0]} slices")
    return indices


def _member_scores(tiler: Tiler, fast, volume: np.ndarray, rank: int, members: int, number: int, jobs: int):
    """One member's ``(K, Z, Y, X)`` scores of one job, yielding progress: a 3D model runs
    one job (the volume) and progress counts its tiles; an ensemble counts all members' tiles."""
    tiles = tiler.iter(fast, volume)
    while True:
        try:
            done, total = next(tiles)
        except StopIteration as stop:
            scores = stop.value
            return scores[:, None] if scores.ndim == 3 else scores  # one slice: (K, Y, X)
        yield PredictProgress(
            done=rank * total + done, total=members * total, slice_index=number, n_slices=jobs
        )


def _jobs(loaded: LoadedModel, stack, indices: list[int], tile_depth: int) -> list:
    """What to run the network on: a list of ``(first slice, read normalised input,
    [(output index, source slice)])``. 2D models: one slice at a time, normalised as
    ``loaded``'s recipe says (:meth:`~napari_unetseg.core.normalization.Normalization.slice_reader`).
    3D models: one volume ``(C, Z, Y, X)``: the whole stack, or the slab around the
    requested slices with half a z tile of context on each side, normalised with the
    whole stack's percentiles. Inputs are read when called."""
    recipe = loaded.normalization
    if getattr(loaded.model, "spatial_dims", 2) != 3:
        read_slice = recipe.slice_reader(stack)
        return [(src, partial(read_slice, src), [(index, src)]) for index, src in enumerate(indices)]
    lo, hi = recipe.percentiles(stack)
    context = tile_depth // 2
    first = max(0, min(indices) - context)
    last = min(stack.shape[0], max(indices) + context + 1)

    def load() -> np.ndarray:
        return np.moveaxis(recipe.apply(np.asarray(stack[first:last]), lo, hi), 1, 0)

    return [(first, load, list(enumerate(indices)))]


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

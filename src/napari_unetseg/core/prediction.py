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
from napari_unetseg.core.object_scale import SizeMatch, zoomed, zoomed_back
from napari_unetseg.core.tiler import ImageSource, Tiler, smaller_batch

__all__ = [
    "PredictionResult",
    "RegionPredictor",
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
        if other.object_zoom != first.object_zoom:
            raise UserInputError(
                f"the models learnt their objects at different zooms ({first.object_zoom:.2f}x and "
                f"{other.object_zoom:.2f}x)",
                "an ensemble needs models trained on objects of the same size",
            )


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

    A 2D object model that learnt large objects zoomed (``LoadedModel.object_zoom``)
    predicts each slice at that zoom, its scores zoomed back; and a 2D object model
    predicts a slice again, zoomed, where its objects are far smaller or larger than those
    it learnt (``config.match_size``, :mod:`~napari_unetseg.core.object_scale`; not where
    ``labels_out`` joins the slices into 3D objects).

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
    predictor = RegionPredictor(models, Tiler.from_config(config, device), softmax=probabilities)
    lut = predictor.lut
    n = len(indices)
    labels = np.zeros((n, *stack.shape[2:]), lut.dtype) if labels_out is None else labels_out
    probs = probabilities_out if probabilities else None
    if probabilities and probs is None:
        probs = np.zeros((n, len(lut), *stack.shape[2:]), np.float32)
    jobs = _jobs(models, stack, indices, config.tile_depth)
    size_match = SizeMatch.of(models, config, labels_out)  # 2D object models: objects at the scale learnt
    zoom = models[0].object_zoom  # a 2D object model that learnt large objects zoomed sees them so
    for number, (first, sources, targets) in enumerate(jobs):
        combined = yield from predictor.iter(
            sources(zoom) if zoom != 1.0 else sources(), progress=(number, len(jobs))
        )
        if zoom != 1.0:
            combined = zoomed_back(combined, stack.shape[2:])
        if size_match is not None:
            where = (first, stack.shape[0])  # the slice's place in the stack (2D jobs: one slice each)
            combined = yield from size_match.iter(predictor, sources, combined, (number, len(jobs)), where)
        combined = combined if combined.ndim == 4 else combined[:, None]  # one slice: (K, 1, Y, X)
        for index, source in targets:
            slab = combined[:, source - first]
            if size_match is None or not size_match.hand_over(labels, index):  # objects made once
                labels[index] = lut[slab.argmax(0)]
            if probs is not None:
                probs[index] = slab
    return PredictionResult(labels=labels, probabilities=probs)


class RegionPredictor:
    """The class scores of one image (a slice for 2D models, a volume for 3D ones), or of a
    region of it, by one model or an ensemble: what :func:`iter_predict` runs per slice and
    a block of :mod:`~napari_unetseg.core.blocks` runs per region.

    Each member's network runs through ``tiler`` over its own normalised view of the image
    (an :class:`~napari_unetseg.core.tiler.ImageSource`), gets its class-prior correction,
    and, for an ensemble or when ``softmax`` asks for probabilities, is turned into
    probabilities and averaged. :attr:`lut` maps the argmax to label values.
    """

    def __init__(self, models: Sequence[LoadedModel], tiler: Tiler, softmax: bool = False) -> None:
        self.models, self.tiler = list(models), tiler
        self.fast = [inference_copy(m.model, tiler.device) for m in self.models]
        self.softmax = softmax or len(self.models) > 1  # one model's argmax needs no softmax
        self.lut = np.asarray(self.models[0].class_values, dtype=labels_dtype(self.models[0].class_values))

    def iter(
        self, sources: Sequence[ImageSource], region: tuple[slice, ...] | None = None, progress=(0, 1)
    ) -> Generator[PredictProgress, None, np.ndarray]:
        """Yield progress (``progress``: this image's number and count); return the
        ``(K, *region)`` scores, probabilities when :attr:`softmax`."""
        combined = None
        for rank, (model, fast, source) in enumerate(zip(self.models, self.fast, sources)):
            tiles = self.tiler.iter_region(fast, source, region)
            while True:
                try:
                    done, total = next(tiles)
                except StopIteration as stop:
                    scores = model.adjust(stop.value)  # class-prior correction, if any
                    break
                members = len(self.models)
                yield PredictProgress(rank * total + done, members * total, progress[0], progress[1])
            if self.softmax:
                scores = torch.softmax(torch.from_numpy(scores), 0).numpy() / len(self.models)
            combined = scores if combined is None else combined + scores
        return combined

    def labels(self, scores: np.ndarray) -> np.ndarray:
        """Label values of ``(K, ...)`` scores (the most probable class)."""
        return self.lut[scores.argmax(0)]


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


def is_volume_model(loaded: LoadedModel) -> bool:
    """Whether the model is a 3D network (it predicts volumes, not slices)."""
    return getattr(loaded.model, "spatial_dims", 2) == 3


def _jobs(models: Sequence[LoadedModel], stack, indices: list[int], tile_depth: int) -> list:
    """What to run the networks on: a list of ``(first slice, sources, [(output index,
    source slice)])``, where ``sources()`` reads the input and gives each model's
    :class:`~napari_unetseg.core.tiler.ImageSource`. 2D models: one slice at a time,
    normalised as each model's recipe says (from the slice's own percentiles, or the
    stack's for 0.1 model files; ``sources(zoom)``: the slice zoomed, normalised as the
    slice). 3D models: one volume ``(C, Z, Y, X)``: the whole stack,
    or the slab around the requested slices with half a z tile of context on each side,
    normalised with the whole stack's percentiles."""
    recipes = [m.normalization for m in models]
    if not is_volume_model(models[0]):
        whole = [r.percentiles(stack) if r.scope == "stack" else None for r in recipes]

        def sources(index: int, zoom: float = 1.0) -> list[ImageSource]:
            raw = np.asarray(stack[index])  # read once, for every member
            stats = [w if w is not None else r.percentiles(raw[None]) for r, w in zip(recipes, whole)]
            raw = raw if zoom == 1.0 else zoomed(raw, zoom)  # normalised as the slice itself
            return [ImageSource(raw, lo, hi) for lo, hi in stats]

        return [(src, partial(sources, src), [(index, src)]) for index, src in enumerate(indices)]
    stats = [r.percentiles(stack) for r in recipes]
    context = tile_depth // 2
    first = max(0, min(indices) - context)
    last = min(stack.shape[0], max(indices) + context + 1)

    def volume() -> list[ImageSource]:
        slab = np.asarray(stack[first:last])
        return [ImageSource(slab, lo, hi, channels_second=True) for lo, hi in stats]

    return [(first, volume, list(enumerate(indices)))]


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

"""Objects at the scale the model learnt (issue 23): a 2D object model trained on nuclei of
one size finds nothing, or merged clumps, in an image whose nuclei are five times smaller
(a 10x field after 63x training), and splits nuclei five times larger. Cellpose rescales
every image to the diameter its model was trained at; here the model file records the
sizes it learnt and prediction rescales only the images whose objects fall outside them.

Size is the *largest depth* of an object: its largest distance from its edge (the edge
being where it touches the background or another object, as :mod:`instances` draws
cores), about its radius. Unlike the area it barely moves when two touching nuclei are
predicted as one, which is what an image at the wrong scale gives.

* Training (:class:`~napari_unetseg.core.instances.ObjectClasses`) records
  :func:`depth_range` of the objects it learns: the 10th, 50th and 90th percentiles of
  their largest depths (``LoadedModel.object_depths``, 2D models).
* Training also sees large objects smaller: a 2D object run whose objects' median largest
  depth is over :data:`TRAIN_DEPTH` learns its images and labels zoomed to bring it there
  (:func:`training_zoom`, ``LoadedModel.object_zoom``), so that a training patch holds
  whole nuclei with their neighbours; the sizes are recorded as labelled, and prediction
  predicts every slice at that zoom, its scores zoomed back.
* Prediction (:func:`~napari_unetseg.core.prediction.iter_predict`, ``PredictConfig.
  match_size``): each slice is predicted as usual; :func:`zoom_for` takes the median
  largest depth of its objects (the seeded watershed's, or, with fewer than
  :data:`MIN_OBJECTS` of them, the pieces of predicted foreground). Inside the learnt
  range (the 10th-90th percentiles, widened by the training's random zoom) nothing
  changes; outside, the slice is predicted again zoomed so that the median matches the
  learnt median (at most :data:`MAX_ZOOM` either way, to at most :data:`MAX_PIXELS`
  pixels and at least :data:`MIN_SIDE` a side), and the class scores are zoomed back to
  the slice.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.measure import label as connected_components

from napari_unetseg.core.config import AdvancedOptions
from napari_unetseg.core.events import ZoomEvent
from napari_unetseg.core.instances import depths_to_edges, objects_of_classes
from napari_unetseg.core.object_sink import ObjectSlices, is_object_model, object_recipe

PERCENTILES = (10, 50, 90)  # the range of sizes a model has learnt, and its middle
TRAIN_DEPTH = 16.0  # px: 2D object runs whose objects are deeper (median) learn them zoomed to this
MIN_OBJECTS = 5  # fewer seeded objects than this: the size is read from the foreground's pieces
MAX_ZOOM = 6.0  # the largest rescaling of a slice, either way
MAX_PIXELS = 64_000_000  # ... and the largest slice it may make (pixels)
MIN_SIDE = 64  # ... and the shortest side of a slice it may make (pixels)


def largest_depths(instances: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The ids of the objects of an instance image (2D or 3D) and each one's largest
    distance from its edge, where it touches the background or another object."""
    if not instances.any():
        return np.zeros(0, instances.dtype), np.zeros(0)
    return depths_to_edges(instances)[1:]


def depth_range(label_stacks, label_mode: str) -> tuple[float, ...]:
    """:data:`PERCENTILES` of the largest depths of the objects in 2D object labels (every
    id of ``dense`` labels, the painted objects 2, 3, ... of ``sparse`` ones), plane by
    plane; ``()`` when there is none."""
    first = 1 if label_mode == "dense" else 2
    depths = []
    for stack in label_stacks:
        stack = np.asarray(stack)
        for plane in stack.reshape(-1, *stack.shape[-2:]):
            depths.append(largest_depths(np.where(plane >= first, plane, 0))[1])
    return depth_percentiles(np.concatenate(depths) if depths else np.zeros(0))


def depth_percentiles(depths: np.ndarray) -> tuple[float, ...]:
    """:data:`PERCENTILES` of objects' largest depths; ``()`` when there is none."""
    return tuple(float(p) for p in np.percentile(depths, PERCENTILES)) if len(depths) else ()


def learnt_range(object_depths, train_config: dict) -> tuple[float, float, float] | None:
    """``(low, middle, high)`` sizes (largest depths) a model has learnt: its recorded
    percentiles, the outer ones widened by the random zoom it was trained with; ``None``
    when the model file records none."""
    if len(object_depths) != len(PERCENTILES) or not object_depths[1] > 0:
        return None
    zoom = float(
        (train_config.get("advanced") or {}).get("zoom", AdvancedOptions.zoom) or AdvancedOptions.zoom
    )
    low, middle, high = object_depths
    return low / zoom, middle, high * zoom


def training_zoom(object_depths, shapes, patch_size: int) -> float:
    """The zoom a 2D object run learns its images at: 1, or, where the median largest
    depth of its objects (``object_depths``, :data:`PERCENTILES`) is over
    :data:`TRAIN_DEPTH`, the zoom that brings it to :data:`TRAIN_DEPTH`, so that a
    training patch holds whole objects with their neighbours (Cellpose rescales every
    image to one nucleus diameter); never so far that an image of ``shapes`` (its ``(Y,
    X)``) gets a side under ``patch_size``."""
    if len(object_depths) != len(PERCENTILES) or not object_depths[1] > TRAIN_DEPTH:
        return 1.0
    smallest = min(min(shape[-2:]) for shape in shapes)
    return min(1.0, max(TRAIN_DEPTH / object_depths[1], patch_size / smallest))


def zoomed_stack(stack, zoom: float, labels: bool = False) -> np.ndarray:
    """A stack ``(..., Y, X)`` zoomed in Y and X: an image linearly (float32), labels by
    their nearest value."""
    factors = (1,) * (np.ndim(stack) - 2) + (zoom, zoom)
    if labels:
        return ndimage.zoom(np.asarray(stack), factors, order=0)
    return ndimage.zoom(np.asarray(stack, dtype=np.float32), factors, order=1)


def slice_size(objects: np.ndarray, foreground: np.ndarray) -> float | None:
    """The size of a slice's objects: the median largest depth of its seeded ``objects``,
    or, with fewer than :data:`MIN_OBJECTS` of them, of the connected pieces of its
    ``foreground`` (a mask, labelled only then); ``None`` when there is nothing to measure."""
    pieces = objects if objects.max() >= MIN_OBJECTS else connected_components(foreground, connectivity=1)
    depths = largest_depths(pieces)[1]
    size = float(np.median(depths)) if len(depths) else 0.0
    return size if size > 0 else None


def zoom_for(objects: np.ndarray, foreground: np.ndarray, learnt, shape: tuple[int, ...]) -> float:
    """How much to zoom a slice whose predicted ``objects`` (and ``foreground``, when there
    are few objects) lie outside the ``learnt`` range
    (:func:`learnt_range`); 1.0 inside it, without objects or without a range. The zoom is
    limited to :data:`MAX_ZOOM` either way, to :data:`MAX_PIXELS` and to sides of at least
    :data:`MIN_SIDE` for a slice of ``shape``."""
    return zoom_to(slice_size(objects, foreground), learnt, shape)


def zoom_to(size: float | None, learnt, shape: tuple[int, ...]) -> float:
    """:func:`zoom_for` a slice of ``shape`` whose objects' size (:func:`slice_size`) is ``size``."""
    if learnt is None or size is None:
        return 1.0
    low, middle, high = learnt
    if low <= size <= high:
        return 1.0
    zoom = middle / size
    if zoom < 1:
        return min(1.0, max(zoom, 1 / MAX_ZOOM, MIN_SIDE / min(shape)))
    return max(1.0, min(zoom, MAX_ZOOM, float(np.sqrt(MAX_PIXELS / np.prod(shape)))))


def zoomed(image: np.ndarray, zoom: float) -> np.ndarray:
    """A ``(C, Y, X)`` slice zoomed in Y and X (linear; float32)."""
    return ndimage.zoom(np.asarray(image, dtype=np.float32), (1, zoom, zoom), order=1)


def zoomed_back(scores: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``(K, y, x)`` class scores zoomed (linear) to ``(K, *shape)``."""
    factors = (1, shape[0] / scores.shape[1], shape[1] / scores.shape[2])
    out = ndimage.zoom(scores, factors, order=1)
    return out[:, : shape[0], : shape[1]]


class SizeMatch:
    """:func:`~napari_unetseg.core.prediction.iter_predict`'s second look at a slice of a 2D
    object model (or an ensemble of them: the first member's learnt range): :meth:`iter`
    takes the slice's class scores and, where its objects lie outside the learnt range,
    predicts it again zoomed and returns those scores zoomed back."""

    def __init__(self, loaded) -> None:
        self.learnt = learnt_range(loaded.object_depths, loaded.train_config)
        self.base = loaded.object_zoom  # every slice is predicted at this zoom first
        self.interior, self.boundary, self.min_size = object_recipe(loaded)
        self.lut = np.asarray(loaded.class_values)
        self.objects: np.ndarray | None = None  # the last slice's objects, when it was not zoomed

    @classmethod
    def of(cls, models, config, labels_out=None) -> SizeMatch | None:
        """The size match of an ensemble's first model, or ``None`` where none applies:
        ``config.match_size`` off, not an object model, a 3D model, no learnt range, or
        slices that ``labels_out`` joins into 3D objects (an
        :class:`~napari_unetseg.core.object_sink.ObjectSlices` with ``volume``: the top and
        bottom slices of a nucleus are small cuts of it, not small nuclei)."""
        first = models[0]
        flat = getattr(first.model, "spatial_dims", 2) == 2 and not getattr(labels_out, "volume", False)
        if not (config.match_size and flat and is_object_model(first)):
            return None
        match = cls(first)
        return match if match.learnt is not None else None

    def zoom(self, scores: np.ndarray) -> tuple[float, float | None]:
        """The zoom a slice of ``(K, Y, X)`` class scores asks for (:func:`zoom_for`), and
        the size of its objects (:func:`slice_size`)."""
        return self.zoom_of(self.lut[scores.argmax(0)])

    def zoom_of(self, classes: np.ndarray) -> tuple[float, float | None]:
        """:meth:`zoom` of a slice's ``(Y, X)`` predicted classes (label values); keeps
        its objects in :attr:`objects` when it is not zoomed."""
        objects = objects_of_classes(classes, self.interior, self.boundary, self.min_size)
        size = slice_size(objects, (classes == self.interior) | (classes == self.boundary))
        zoom = zoom_to(size, self.learnt, classes.shape)
        self.objects = objects if zoom == 1.0 else None
        return zoom, size

    def hand_over(self, labels, index: int) -> bool:
        """Give the objects of the slice just matched, if it was not zoomed, to ``labels``
        when it is a sink that makes them with the same recipe (an
        :class:`~napari_unetseg.core.object_sink.ObjectSlices` of single slices), so that the
        seeded watershed runs once per slice; whether it did."""
        objects, self.objects = self.objects, None
        same = isinstance(labels, ObjectSlices) and not labels.volume
        if objects is None or not same or labels.recipe() != (self.interior, self.boundary, self.min_size):
            return False
        labels.put_objects(index, objects)
        return True

    def iter(self, predictor, sources, scores: np.ndarray, progress, where):
        """Yield a :class:`~napari_unetseg.core.events.ZoomEvent` and the progress of a
        second prediction, if one is needed; return the slice's ``(K, Y, X)`` scores:
        ``scores``, or the zoomed slice's zoomed back. ``sources(zoom)`` gives the members'
        image sources of the slice zoomed; ``progress``: the slice's number and count among
        those predicted; ``where``: its index in the stack and the stack's length."""
        zoom, size = self.zoom(scores)
        if zoom == 1.0:
            return scores
        yield ZoomEvent(*where, self.base * zoom, size, *self.learnt)  # the zoom the image is predicted at
        again = yield from predictor.iter(sources(self.base * zoom), progress=progress)
        return zoomed_back(again, scores.shape[1:])

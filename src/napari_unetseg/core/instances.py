"""Objects from classes and back: the encoding that lets a class network separate
touching objects (issue 23).

Instance labels (one id per object, 0 = background) become three classes,
:data:`BACKGROUND`, :data:`INTERIOR` (the core of every object: its pixels at least half
its largest depth from its edge, the edge being where it touches the background or
another object) and :data:`BOUNDARY` (the rest of the object), which the U-Net learns
like any other classes. The cores of touching objects lie apart, and the boundary class
is about three quarters of each object, not a thin rare band, so it is learnt as well as
the others. From a predicted class image the objects come back by a seeded watershed
(scikit-image): every connected piece of interior is a seed, but for those under
:data:`SEED_SHARE` of the largest seed in their piece of foreground (a speck of interior
inside a large object, which would split it), and the seeds grow over the foreground
(interior and boundary) to the nearest seed. A piece of foreground with no interior is
no object (the network saw no core there: debris, mostly); objects under :data:`MIN_SIZE`
pixels (specks of boundary, mostly), or under :data:`MIN_SHARE` of the median object the
model learnt from (:func:`min_object_size`: debris, where objects are large), are dropped.
2D and 3D. Prediction hands its class slices to the sink of
:mod:`~napari_unetseg.core.object_sink`, which makes and numbers the objects.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage
from skimage.measure import label as connected_components
from skimage.segmentation import find_boundaries, relabel_sequential, watershed

from napari_unetseg.core.errors import UserInputError
from napari_unetseg.core.objects import check_instances, looks_like_classes, pieces_per_id

BACKGROUND, INTERIOR, BOUNDARY = 0, 1, 2
CLASS_NAMES = ("background", "interior", "boundary")
CORE = 0.5  # the interior: the pixels at least half the object's largest depth from its edge
MIN_SIZE = 15  # predicted objects smaller than this (pixels, or voxels) are dropped, as Cellpose does
MIN_SHARE = 0.02  # ... and those under this share of the median object the model was trained on
SEED_SHARE = 0.1  # seeds under this share of the largest in their foreground piece are dropped
OUTSIDE = 2  # painted objects: the unpainted pixels this close to one (as painted) are background


def instance_classes(instances: np.ndarray, core: float | None = None) -> np.ndarray:
    """The three classes of an instance image (``uint8``): background, interior (each
    object's core: the pixels at least ``core`` (default :data:`CORE`) times the object's
    largest distance from its edge, where its edge touches the background or another
    object) and boundary (the rest of each object). Every object keeps a core, however small."""
    return classes_and_depths(instances, core)[0]


def classes_and_depths(instances: np.ndarray, core: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """:func:`instance_classes` of an instance image, and the largest depth of each of its
    objects (:func:`depths_to_edges`: the sizes :mod:`~napari_unetseg.core.object_scale`
    records), from one distance transform."""
    core = CORE if core is None else core
    instances = check_instances(instances, "instance image")
    inside = instances > 0
    classes = np.where(inside, INTERIOR, BACKGROUND).astype(np.uint8)
    if not inside.any():
        return classes, np.zeros(0)
    depth, ids, largest = depths_to_edges(instances)
    top = np.zeros(int(ids[-1]) + 1)
    top[ids] = largest
    classes[inside & (depth < core * top[instances])] = BOUNDARY
    return classes, largest


def depths_to_edges(instances: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each pixel's distance to the nearest object edge (an object's pixels next to the
    background or to another object), the ids of the objects of an instance image with at
    least one object (2D or 3D), and each one's largest such distance (its depth)."""
    edge = find_boundaries(instances, connectivity=1, mode="inner")
    depth = ndimage.distance_transform_edt(~edge)
    ids = np.unique(instances[instances > 0])
    return depth, ids, np.asarray(ndimage.maximum(depth, instances, ids), dtype=float)


def training_classes(
    labels: np.ndarray, label_mode: str, volume: bool = False, outside: int = OUTSIDE
) -> np.ndarray:
    """The classes a network learns from object labels, plane by plane (or as one volume)
    (:func:`training_classes_and_depths`)."""
    return training_classes_and_depths(labels, label_mode, volume, outside)[0]


def training_classes_and_depths(
    labels: np.ndarray, label_mode: str, volume: bool = False, outside: int = OUTSIDE
) -> tuple[np.ndarray, np.ndarray]:
    """The classes a network learns from object labels, plane by plane (or as one volume),
    and the largest depth of each object learnt (of every plane's objects, or the volume's).

    ``dense``: every object its own id, 0 = background -> :data:`BACKGROUND`,
    :data:`INTERIOR`, :data:`BOUNDARY` (0, 1, 2) everywhere. ``sparse`` (painted in
    napari): 0 = unpainted (ignored), 1 = background strokes, 2, 3, ... = whole objects,
    each painted with its own label -> 0 unpainted, 1 background, 2 interior, 3 boundary;
    the unpainted pixels within ``outside`` px (:data:`OUTSIDE`) of a painted object are
    background too (the object is whole: what lies just outside it is not it), so that the
    network sees where objects end, which strokes kept away from the objects would never
    show it.
    """
    labels = check_instances(labels, "labels")
    planes = [labels] if volume else list(labels.reshape(-1, *labels.shape[-2:]))
    if label_mode == "dense":
        for plane in planes:
            why = looks_like_classes(plane)
            if why:
                raise UserInputError(f"{why}: objects are learnt from object ids", PAINT_OBJECTS_DENSE)
        done = [classes_and_depths(plane) for plane in planes]
    else:
        check_painted_objects(labels)
        done = [_painted_classes(plane, outside) for plane in planes]
    classes = np.stack([c for c, _ in done]).reshape(labels.shape)
    return classes, np.concatenate([d for _, d in done])


def _painted_classes(plane: np.ndarray, outside: int = OUTSIDE) -> tuple[np.ndarray, np.ndarray]:
    """The classes of one plane (or volume) of painted objects (:func:`training_classes`),
    and the largest depth of each painted object."""
    objects = np.where(plane >= 2, plane, 0)
    inside = objects > 0
    # a whole object ends where it is painted: the unpainted pixels just outside it are not it
    around = ndimage.binary_dilation(inside, iterations=outside) & (plane == 0)
    classes = np.where((plane == 1) | around, 1, 0).astype(np.uint8)
    object_classes, depths = classes_and_depths(objects)
    classes[inside] = object_classes[inside] + 1
    return classes, depths


def median_object_size(label_stacks: Sequence[np.ndarray], label_mode: str, volume: bool = False) -> float:
    """The median size (pixels of a plane, or voxels of a volume) of the objects in object
    labels: every id for ``dense`` labels, the painted objects (2, 3, ...) for ``sparse``; 0
    when there are none."""
    first = 1 if label_mode == "dense" else 2
    sizes = []
    for stack in label_stacks:
        stack = np.asarray(stack)
        for part in [stack] if volume else stack.reshape(-1, *stack.shape[-2:]):
            sizes.append(np.unique(part[part >= first], return_counts=True)[1])  # ids up to 2**32 - 1
    sizes = np.concatenate(sizes) if sizes else np.zeros(0)
    return float(np.median(sizes)) if len(sizes) else 0.0


def min_object_size(object_size: float) -> int:
    """The smallest object kept for a model trained on objects of median size ``object_size``
    (0: unknown, e.g. a model file from before it was recorded): :data:`MIN_SIZE`, or
    :data:`MIN_SHARE` of that median where objects are large."""
    return max(MIN_SIZE, round(MIN_SHARE * object_size))


class ObjectClasses:
    """What a trainer on objects (``TrainConfig.objects``) does to every label stack it
    gets, at the start and at each live update: :func:`training_classes`, plane by plane
    for a 2D model, as one volume for a 3D one; and the median size of the objects in
    them (:attr:`object_size`) and, for a 2D model, the range of their largest depths
    (:attr:`object_depths`, :func:`~napari_unetseg.core.object_scale.depth_range`), both
    kept in the model file."""

    def __init__(self, label_mode: str, model_name: str) -> None:
        from napari_unetseg.core.models import MODELS

        self.label_mode = label_mode
        self.volume = MODELS[model_name].spatial_dims == 3
        self.object_size = 0.0
        self.object_depths: tuple[float, ...] = ()
        self.zoom = 1.0  # 2D: the zoom the classes are learnt at (set by :meth:`first`)

    def __call__(self, label_stacks: Sequence[np.ndarray]) -> list[np.ndarray]:
        """The classes to learn (at :attr:`zoom`); the sizes are measured as labelled."""
        from napari_unetseg.core.object_scale import depth_percentiles

        done = [training_classes_and_depths(stack, self.label_mode, self.volume) for stack in label_stacks]
        self.object_size = median_object_size(label_stacks, self.label_mode, self.volume)
        depths = np.concatenate([d for _, d in done]) if done else np.zeros(0)
        self.object_depths = () if self.volume else depth_percentiles(depths)
        if self.zoom != 1.0:
            return self._zoomed_classes(label_stacks)
        return [classes for classes, _ in done]

    def _zoomed_classes(self, label_stacks: Sequence[np.ndarray]) -> list[np.ndarray]:
        """The classes of the labels zoomed (by their nearest value) as the images are."""
        from napari_unetseg.core.object_scale import zoomed_stack

        stacks = [zoomed_stack(stack, self.zoom, labels=True) for stack in label_stacks]
        outside = max(1, round(OUTSIDE * self.zoom))  # where painting ends: pixels as painted
        return [training_classes(stack, self.label_mode, outside=outside) for stack in stacks]

    def first(self, label_stacks: Sequence[np.ndarray], warning: str | None, patch_size: int):
        """The classes of the run's first labels, their names, and the warning to show
        (the label-mode one, or for sparse labels :func:`dense_objects_warning`). A 2D run
        of large objects learns them zoomed (:attr:`zoom`,
        :func:`~napari_unetseg.core.object_scale.training_zoom`)."""
        from napari_unetseg.core.object_scale import training_zoom

        if self.label_mode == "sparse":
            warning = dense_objects_warning(label_stacks)
        classes = self(label_stacks)  # at zoom 1; the sizes measured
        if not self.volume:
            self.zoom = training_zoom(self.object_depths, [s.shape for s in label_stacks], patch_size)
            classes = self._zoomed_classes(label_stacks) if self.zoom != 1.0 else classes
        return classes, list(CLASS_NAMES), warning


PAINT_OBJECTS = (
    "paint each object whole with its own label (2, 3, ...: in napari press M for a new label and fill "
    "the object with the bucket) and a few background strokes with label 1"
)


PAINT_OBJECTS_DENSE = "give every object its own id (0 = background), or paint objects with sparse labels"


def dense_objects_warning(label_stacks) -> str | None:
    """A warning when sparse object labels look like dense ground truth: on every plane
    with label 1 (background strokes) and three or more objects, label 1 is one compact,
    roundish piece no larger than the largest object, as object 1 of an instance image is
    (a brush stroke is long and thin, or in several pieces)."""
    from skimage.measure import regionprops

    looked = 0
    for labels in label_stacks:
        for plane in np.asarray(labels).reshape(-1, *labels.shape[-2:]):
            if not (plane == 1).any() or len(np.unique(plane[plane >= 2])) < 3:
                continue
            pieces = connected_components(plane == 1, connectivity=2)
            if pieces.max() != 1:
                return None
            one = regionprops(pieces)[0]
            largest = np.unique(plane[plane >= 2], return_counts=True)[1].max()
            roundish = one.axis_major_length < 3 * max(one.axis_minor_length, 1)
            if not (one.solidity > 0.85 and roundish and one.area <= largest):
                return None
            looked += 1
    if not looked:
        return None
    return (
        "label 1 is taken as background strokes (sparse labels), but it looks like one object: "
        "if the labels are object ids with 0 = background, train with dense labels"
    )


def check_painted_objects(labels: np.ndarray) -> None:
    """Refuse sparse object labels without a whole object: no label above 1, or every
    label painted in several separate pieces (strokes of a class, not objects)."""
    objects = np.where(labels >= 2, labels, 0)
    if not objects.any():
        raise UserInputError(f"no object is painted (only background strokes, label 1): {PAINT_OBJECTS}")
    ids, per_id = pieces_per_id(objects)
    if (per_id > 1).all():
        listed = ", ".join(str(i) for i in ids[:5]) + (", ..." if len(ids) > 5 else "")
        which = f"label {listed} is" if len(ids) == 1 else f"labels {listed} are each"
        raise UserInputError(
            f"{which} painted in several separate pieces, as strokes of a class, not objects: {PAINT_OBJECTS}"
        )


def instances_from_classes(
    classes: np.ndarray,
    min_seed: int = 1,
    min_size: int = MIN_SIZE,
    seed_share: float = SEED_SHARE,
    seedless: bool = False,
) -> np.ndarray:
    """Object ids (``uint32``, 1..N) from a class image of :func:`instance_classes`'
    numbering: seeds are the connected pieces of interior of at least ``min_seed`` pixels
    and at least ``seed_share`` times the largest seed of their piece of foreground, grown
    over the foreground to the nearest seed; a piece of foreground without a seed is no
    object (with ``seedless``, as before stop 42, it is one). Objects of fewer than
    ``min_size`` pixels are dropped."""
    classes = np.asarray(classes)
    interior = classes == INTERIOR
    foreground = interior | (classes == BOUNDARY)
    seeds = connected_components(interior, connectivity=1)
    if min_seed > 1 and seeds.max():
        sizes = np.bincount(seeds.ravel())
        small = np.flatnonzero(sizes < min_seed)
        seeds[np.isin(seeds, small[small > 0])] = 0
    if seed_share > 0 and seeds.max():
        seeds = _drop_minor_seeds(seeds, foreground, seed_share)
    distance = ndimage.distance_transform_edt(~(seeds > 0)) if seeds.max() else np.zeros(classes.shape)
    objects = watershed(distance, seeds, mask=foreground).astype(np.uint32)
    rest = connected_components(foreground & (objects == 0), connectivity=1)
    if seedless and rest.max():
        objects[rest > 0] = rest[rest > 0] + objects.max()
    if min_size > 1 and objects.max():
        small = np.flatnonzero(np.bincount(objects.ravel()) < min_size)
        objects[np.isin(objects, small[small > 0])] = 0
    return relabel_sequential(objects)[0]


def _drop_minor_seeds(seeds: np.ndarray, foreground: np.ndarray, share: float) -> np.ndarray:
    """``seeds`` without those under ``share`` times the largest seed in the same connected
    piece of ``foreground`` (their pixels are then flooded from the seeds kept)."""
    pieces = connected_components(foreground, connectivity=1)
    sizes = np.bincount(seeds.ravel())
    ids = np.flatnonzero(sizes[1:]) + 1
    piece = ndimage.maximum(pieces, seeds, ids).astype(np.int64)  # each seed lies in one piece
    largest = np.zeros(int(pieces.max()) + 1)
    np.maximum.at(largest, piece, sizes[ids])
    minor = ids[sizes[ids] < share * largest[piece]]
    return np.where(np.isin(seeds, minor), 0, seeds)


def objects_of_classes(
    classes: np.ndarray, interior: int, boundary: int, min_size: int = MIN_SIZE
) -> np.ndarray:
    """Object ids (1..N, ``uint32``) of a predicted class image (a plane, or a volume) whose
    ``interior`` and ``boundary`` values are the model's (:func:`instances_from_classes`;
    objects under ``min_size`` dropped)."""
    canonical = np.full(classes.shape, BACKGROUND, np.uint8)
    canonical[classes == interior] = INTERIOR
    canonical[classes == boundary] = BOUNDARY
    return instances_from_classes(canonical, min_size=min_size)

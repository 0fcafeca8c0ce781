"""Objects from classes and back: the encoding that lets a class network separate
touching objects (issue 23).

Instance labels (one id per object, 0 = background) become three classes,
:data:`BACKGROUND`, :data:`INTERIOR` and :data:`BOUNDARY` (the outer ``boundary_width``
pixels of every object, where objects touch each other or the background), which the
U-Net learns like any other classes. From a predicted class image the objects come back
by a seeded watershed (scikit-image): every connected piece of interior is a seed, and the
seeds grow over the foreground (interior and boundary) to the nearest seed, so the thin
boundary between two touching objects is split between them. A piece of foreground with
no interior (an object too small for an interior) becomes an object by itself. 2D and 3D.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.measure import label as connected_components
from skimage.segmentation import find_boundaries, relabel_sequential, watershed

from napari_unetseg.core.objects import check_instances

BACKGROUND, INTERIOR, BOUNDARY = 0, 1, 2
CLASS_NAMES = ("background", "interior", "boundary")


def instance_classes(instances: np.ndarray, boundary_width: int = 2) -> np.ndarray:
    """The three classes of an instance image (``uint8``): background, interior, and
    the outer ``boundary_width`` pixels of each object. An object too small to keep an
    interior is left all interior, so that it still gives a seed."""
    instances = check_instances(instances, "instance image")
    edge = find_boundaries(instances, connectivity=1, mode="inner")
    band = edge if boundary_width <= 1 else ndimage.distance_transform_edt(~edge) < boundary_width
    band &= instances > 0
    classes = np.where(instances > 0, INTERIOR, BACKGROUND).astype(np.uint8)
    classes[band] = BOUNDARY
    ids = np.unique(instances[instances > 0])
    kept = np.unique(instances[(instances > 0) & ~band])
    lost = np.setdiff1d(ids, kept)
    if lost.size:
        classes[np.isin(instances, lost)] = INTERIOR
    return classes


def plane_classes(stack: np.ndarray, boundary_width: int = 2) -> np.ndarray:
    """:func:`instance_classes` of every 2D plane (the last two axes) of ``stack``."""
    stack = np.asarray(stack)
    planes = stack.reshape(-1, *stack.shape[-2:])
    return np.stack([instance_classes(plane, boundary_width) for plane in planes]).reshape(stack.shape)


def instances_from_classes(classes: np.ndarray, min_seed: int = 1) -> np.ndarray:
    """Object ids (``uint32``, 1..N) from a class image of :func:`instance_classes`'
    numbering: seeds are the connected pieces of interior of at least ``min_seed`` pixels,
    grown over the foreground to the nearest seed; seedless foreground pieces are objects."""
    classes = np.asarray(classes)
    interior = classes == INTERIOR
    foreground = interior | (classes == BOUNDARY)
    seeds = connected_components(interior, connectivity=1)
    if min_seed > 1 and seeds.max():
        sizes = np.bincount(seeds.ravel())
        small = np.flatnonzero(sizes < min_seed)
        seeds[np.isin(seeds, small[small > 0])] = 0
    distance = ndimage.distance_transform_edt(~(seeds > 0)) if seeds.max() else np.zeros(classes.shape)
    objects = watershed(distance, seeds, mask=foreground).astype(np.uint32)
    rest = connected_components(foreground & (objects == 0), connectivity=1)
    if rest.max():
        objects[rest > 0] = rest[rest > 0] + objects.max()
    return relabel_sequential(objects)[0]


class ObjectSlices:
    """Where prediction writes class slices (``out[i] = slab``, as
    :func:`~napari_unetseg.core.prediction.iter_predict` does): each slice's objects go to
    ``target`` instead (ids 1..N within each slice)."""

    def __init__(self, target) -> None:
        self.target = target

    def __setitem__(self, index, slab: np.ndarray) -> None:
        self.target[index] = instances_from_classes(slab)


def is_object_model(loaded) -> bool:
    """Whether a model file was trained on objects (``unetseg train --objects``)."""
    return bool(loaded.train_config.get("objects"))

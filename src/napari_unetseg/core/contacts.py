"""Where objects touch: the extra training weight of an object run (issue 23).

Touching objects are what merge in the object mode's predictions (docs/engine.md,
"Objects"). An object run therefore weighs the cross-entropy of each labelled pixel by
``1 + level``, the level :func:`contact_levels` being highest on the boundary between two
touching objects and falling off as a Gaussian away from it (the gap between two objects
that nearly touch is included), as the weight map of Ronneberger et al. (U-Net, 2015)
does for cells. The levels are computed once per training slice (or volume) and travel
with the sampled targets (:class:`~napari_unetseg.core.data.PatchSampler`,
:func:`~napari_unetseg.core.losses.split_target`), so every augmentation moves them with
the classes.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from napari_unetseg.core.instances import BACKGROUND, instances_from_classes

CONTACT_WEIGHT = 10  # the extra cross-entropy weight where two objects touch (U-Net 2015's w0)
CONTACT_SIGMA = 3.0  # ... falling off as a Gaussian of this width (pixels) away from the contact


def contact_levels(target: np.ndarray, weight: int | None = None, sigma: float | None = None) -> np.ndarray:
    """The extra training weight of each pixel of an encoded object target (``uint8``,
    0..``weight``): ``round(weight * exp(-d**2 / (2 * sigma**2)))``, ``d`` the distance to
    the nearest pixel where two objects touch (defaults :data:`CONTACT_WEIGHT`,
    :data:`CONTACT_SIGMA`); 0 on ignored pixels, and everywhere when no objects touch.

    ``target`` is a training target (a plane or a volume) in the numbering of
    :mod:`~napari_unetseg.core.instances` (background 0, interior 1, boundary 2; -1
    ignored), as dense and painted object runs both encode it. Its objects come back by
    :func:`~napari_unetseg.core.instances.instances_from_classes` (each object's core is
    its seed).
    """
    weight = CONTACT_WEIGHT if weight is None else weight
    sigma = CONTACT_SIGMA if sigma is None else sigma
    target = np.asarray(target)
    levels = np.zeros(target.shape, np.uint8)
    if not weight:
        return levels
    objects = instances_from_classes(np.where(target < 0, BACKGROUND, target), min_size=1)
    contact = touching(objects)
    if not contact.any():
        return levels
    distance = ndimage.distance_transform_edt(~contact)
    levels[:] = np.rint(weight * np.exp(-(distance**2) / (2 * sigma**2)))
    levels[target < 0] = 0
    return levels


def touching(objects: np.ndarray) -> np.ndarray:
    """The pixels (or voxels) of an object that have a neighbour of another object along
    an axis (background is no object)."""
    contact = np.zeros(objects.shape, bool)
    for axis in range(objects.ndim):
        before = [slice(None)] * objects.ndim
        after = [slice(None)] * objects.ndim
        before[axis], after[axis] = slice(None, -1), slice(1, None)
        a, b = objects[tuple(before)], objects[tuple(after)]
        meet = (a != b) & (a > 0) & (b > 0)
        contact[tuple(before)] |= meet
        contact[tuple(after)] |= meet
    return contact

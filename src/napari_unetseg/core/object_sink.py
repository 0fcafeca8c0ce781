"""Where a predicted object model's classes become objects (issue 23): the object sink
that prediction writes class slices into (:class:`ObjectSlices`), the recipe it takes from
a model file (:func:`object_recipe`), and the checks of ``--objects-3d``.

2D models' slices become objects one by one, numbered on over the stack; a 3D model's
volume (or a 2D model's z-stack with ``--objects-3d``) once all its slices have come, by
one 3D seeded watershed (:func:`~napari_unetseg.core.instances.objects_of_classes`).
"""

from __future__ import annotations

import numpy as np

from napari_unetseg.core.errors import UserInputError
from napari_unetseg.core.instances import BOUNDARY, INTERIOR, MIN_SIZE, min_object_size, objects_of_classes
from napari_unetseg.core.objects import MAX_ID


def object_recipe(loaded) -> tuple[int, int, int]:
    """How an object model's classes become objects: its label values of the interior and
    boundary classes, and the smallest object kept (:func:`min_object_size`)."""
    values = dict(zip(loaded.class_names, loaded.class_values))
    return values["interior"], values["boundary"], min_object_size(loaded.object_size)


class ObjectSlices:
    """Where prediction writes class slices (``out[i] = slab``, as
    :func:`~napari_unetseg.core.prediction.iter_predict` does): their objects go to
    ``target`` instead, numbered on from the slices before (every object of the stack
    has its own id, so a layer's features table has one row per object).

    ``n_slices`` and ``volume``: a 3D model's classes are kept until all ``n_slices``
    slices have come and then turned into 3D objects at once (a 2D model's slice by
    slice). ``interior`` and ``boundary`` are the model's values of those classes, objects
    under ``min_size`` are dropped (:func:`object_recipe`).
    """

    def __init__(
        self,
        target,
        n_slices: int,
        volume: bool = False,
        interior: int = INTERIOR,
        boundary: int = BOUNDARY,
        min_size: int = MIN_SIZE,
    ) -> None:
        self.target, self.n_slices, self.volume = target, n_slices, volume
        self.interior, self.boundary, self.min_size = interior, boundary, min_size
        self.count = 0
        self._held: dict[int, np.ndarray] = {}

    def __setitem__(self, index: int, slab: np.ndarray) -> None:
        if not self.volume:
            self.target[index] = self._number(slab)
            return
        self._held[index] = slab
        if len(self._held) == self.n_slices:
            objects = self._number(np.stack([self._held.pop(i) for i in range(self.n_slices)]))
            for i, plane in enumerate(objects):
                self.target[i] = plane

    def put_objects(self, index: int, objects: np.ndarray) -> None:
        """Slice ``index``'s objects, made already from its classes with this sink's recipe
        (:meth:`recipe`; what the size match of a 2D slice does): numbered on as
        ``self[index] = classes`` would, without a second watershed."""
        if self.volume:
            raise ValueError("the objects of a volume are made once all its slices have come")
        self.target[index] = self._renumber(np.asarray(objects, np.uint32))

    def recipe(self) -> tuple[int, int, int]:
        """The interior and boundary values and the smallest object of this sink."""
        return self.interior, self.boundary, self.min_size

    def _number(self, classes: np.ndarray) -> np.ndarray:
        return self._renumber(objects_of_classes(classes, self.interior, self.boundary, self.min_size))

    def _renumber(self, objects: np.ndarray) -> np.ndarray:
        found = int(objects.max())
        if self.count + found > MAX_ID:
            raise UserInputError(f"more than {MAX_ID} objects: predict fewer slices at a time")
        objects[objects > 0] += np.uint32(self.count)
        self.count += found
        return objects


def is_object_model(loaded) -> bool:
    """Whether a model file was trained on objects (``unetseg train --objects``)."""
    return bool(loaded.train_config.get("objects"))


def check_z_stack(axes: str, name: str) -> None:
    """3D objects from a 2D model join the slices of one z-stack: refuse a file whose axes
    (``axes``, as read) hold anything but Z besides the channels, Y and X."""
    if "".join(a for a in axes if a not in "CYX") != "Z":
        raise UserInputError(
            f"joins the slices of one z-stack into 3D objects: {name} has the axes {axes}",
            ("give its axes if its first axis is Z, e.g. ZYX", "axes"),
            subject="objects_3d",
        )


def object_sink(loaded, target, n_slices: int, volume: bool = False) -> ObjectSlices:
    """The :class:`ObjectSlices` of an object model (its class values): 3D objects for a 3D
    model, and for a 2D model with ``volume`` (its ``n_slices`` slices are one z-stack:
    their classes are stacked and the seeded watershed runs once in 3D, as for a 3D
    model's); else each slice's 2D objects."""
    volume = volume or getattr(loaded.model, "spatial_dims", 2) == 3
    return ObjectSlices(target, n_slices, volume, *object_recipe(loaded))

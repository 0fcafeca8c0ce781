"""Per-object measurements: one row per object, from scikit-image's ``regionprops_table``.

Columns: ``label`` (the object id), ``area`` (pixels; voxels for 3D objects),
``centroid-*`` and ``bbox-*`` (pixel coordinates, axes in array order), ``eccentricity``
(2D) or ``axis_major_length`` / ``axis_minor_length`` (3D), and with an image
``intensity_mean`` / ``intensity_max`` (one column per channel, ``-0``, ``-1``, ...,
when it has several), and ``touches_edge``: whether the object reaches the edge of its
plane (or a face of its volume), so that part of it may lie outside the image (drop
such rows before comparing shapes or sizes, as CellProfiler does by default). A stack of
2D planes is measured plane by plane, with a ``plane`` column; a 3D volume (a Z stack of
3D objects) as one image.
"""

from __future__ import annotations

import numpy as np
from skimage.measure import regionprops_table

from napari_unetseg.core.errors import UserInputError
from napari_unetseg.core.objects import check_instances

SHAPE_2D = ("label", "area", "centroid", "bbox", "eccentricity")
SHAPE_3D = ("label", "area", "centroid", "bbox", "axis_major_length", "axis_minor_length")
INTENSITY = ("intensity_mean", "intensity_max")


def measure_objects(
    objects: np.ndarray, image: np.ndarray | None = None, volume: bool = False
) -> dict[str, np.ndarray]:
    """The measurements of every object (columns of equal length, see the module text).

    Parameters
    ----------
    objects
        Object ids (0 = background): ``(Y, X)``, a ``(N, Y, X)`` stack of planes, or with
        ``volume`` a ``(Z, Y, X)`` volume.
    image
        The intensities, of the shape of ``objects`` or with a channel axis after the
        planes, ``(N, C, Y, X)`` / ``(C, Y, X)``, as the engine's stacks have it.
    volume
        Measure ``objects`` as one 3D image.
    """
    objects = check_instances(objects, "object image")
    if objects.ndim not in (2, 3) or (volume and objects.ndim != 3):
        raise UserInputError(f"expected 2D object ids or a stack of them, got the shape {objects.shape}")
    channels = _channels_last(objects, image)
    if volume or objects.ndim == 2:
        return _table(objects, channels, 3 if volume else 2)
    planes = [_table(objects[i], None if channels is None else channels[i], 2) for i in range(len(objects))]
    columns = {"plane": np.concatenate([np.full(len(t["label"]), i) for i, t in enumerate(planes)])}
    for key in planes[0]:
        columns[key] = np.concatenate([t[key] for t in planes])
    return columns


def _channels_last(objects: np.ndarray, image: np.ndarray | None) -> np.ndarray | None:
    """The image with its channels last (``regionprops`` wants them there), or a refusal."""
    if image is None:
        return None
    image = np.asarray(image)
    if image.shape == objects.shape:
        return image
    if image.ndim == objects.ndim + 1:
        moved = np.moveaxis(image, -3, -1)
        if moved.shape[:-1] == objects.shape:
            return moved[..., 0] if moved.shape[-1] == 1 else moved
    raise UserInputError(f"the image {image.shape} and the objects {objects.shape} differ in shape")


def _table(objects: np.ndarray, image: np.ndarray | None, dims: int) -> dict[str, np.ndarray]:
    properties = SHAPE_3D if dims == 3 else SHAPE_2D
    if image is not None:
        properties = (*properties, *INTENSITY)
    table = regionprops_table(objects, intensity_image=image, properties=properties)
    table = {key: np.asarray(value) for key, value in table.items()}
    low = np.stack([table[f"bbox-{d}"] == 0 for d in range(dims)])
    high = np.stack([table[f"bbox-{dims + d}"] == objects.shape[d] for d in range(dims)])
    table["touches_edge"] = (low | high).any(axis=0)
    return table


def table_rows(columns: dict[str, np.ndarray]) -> list[list]:
    """The columns as CSV rows, header first (whole numbers stay whole)."""
    keys = list(columns)
    values = [columns[key].tolist() for key in keys]
    return [keys, *[list(row) for row in zip(*values)]]

"""Where the Predict dock's results go: Labels layers of classes or of objects (with
their measurements as the layer's features) and Image layers of probabilities; big
outputs live in temporary files."""

from __future__ import annotations

import tempfile

import numpy as np

from napari_unetseg.widgets._layers import class_layer_style, matching_geometry, own_labels_layer, plane_shape

MEMMAP_BYTES = 1 << 30  # outputs larger than this live in a temporary file, not in RAM


def new_output_array(shape: tuple[int, ...], dtype) -> np.ndarray:
    """A zeroed array for a prediction output: in memory when small, memory-mapped to an
    anonymous temporary file (deleted when the array is) above :data:`MEMMAP_BYTES`, so
    that a big stack's labels and probabilities cost page cache, not resident memory.
    The file goes to the system temporary folder (``TMPDIR``): where that is a RAM-backed
    tmpfs, point ``TMPDIR`` at a disk."""
    dtype = np.dtype(dtype)
    if int(np.prod(shape)) * dtype.itemsize <= MEMMAP_BYTES:
        return np.zeros(shape, dtype)
    with tempfile.TemporaryFile(prefix="unetseg-") as backing:  # the mapping outlives the handle
        return np.memmap(backing, dtype=dtype, mode="w+", shape=shape)


def mark_edited(layer):
    def on_paint(event=None):
        layer.metadata["unetseg_edited"] = True

    return on_paint


def output_layer(viewer, source, name: str, dtype, metadata: dict, style: dict):
    """Our unedited output layer for ``source``, or a new empty one (``style``: its
    colours and class names)."""
    shape = plane_shape(source)
    layer = own_labels_layer(viewer, name, metadata["unetseg"], shape, dtype)
    if layer is not None:
        layer.metadata.update(metadata)
        return layer
    layer = viewer.add_labels(
        new_output_array(shape, dtype),
        name=name,
        metadata=dict(metadata),
        **style,
        **matching_geometry(source),
    )
    layer.events.paint.connect(mark_edited(layer))
    return layer


def write_classes(viewer, source, slices, result, loaded, annotations):
    """Class labels into our unedited prediction layer (or a new one), probabilities beside."""
    names = {v: loaded.name_of(v) for v in loaded.class_values}
    layer = output_layer(
        viewer,
        source,
        f"{source.name} prediction",
        result.labels.dtype,
        {"unetseg": "prediction", "class_values": list(loaded.class_values), "class_names": names},
        class_layer_style(loaded.class_values, names, annotations),
    )
    shape = plane_shape(source)
    flat = layer.data.reshape((-1, *shape[-2:]))
    targets = range(flat.shape[0]) if slices is None else slices
    for row, index in enumerate(targets):
        flat[index] = result.labels[row]
    layer.refresh()
    if result.probabilities is not None:
        write_probabilities(viewer, source, result, loaded)
    return layer


def write_objects(viewer, source, slices, result, features, loaded, volume: bool = False):
    """Objects into our unedited objects layer (or a new one), each with its own id;
    their measurements into its features table (the rows of the slices predicted replaced).
    ``volume``: 3D objects (a 3D model's, or a 2D model's joined over a z-stack), scored
    as volumes by the Evaluate dock."""
    import pandas as pd

    metadata = {"unetseg": "objects", "volume": volume}
    layer = output_layer(viewer, source, f"{source.name} objects", np.uint32, metadata, {})
    objects = result.labels
    flat = layer.data.reshape((-1, *plane_shape(source)[-2:]))
    targets = range(flat.shape[0]) if slices is None else slices
    offset = 0
    if slices is not None:  # a slice joins the stack's objects: new ids after the others'
        others = np.setdiff1d(np.arange(flat.shape[0]), slices)
        offset = max((int(flat[i].max()) for i in others), default=0)
        objects = np.where(objects > 0, objects + np.uint32(offset), 0).astype(np.uint32)
        features = {**features, "label": features["label"] + offset}
    for row, index in enumerate(targets):
        flat[index] = objects[row]
    table = pd.DataFrame({"index": features["label"], **features})
    old = layer.features
    if slices is not None and "plane" in old:
        table = pd.concat([old[~old["plane"].isin(list(slices))], table], ignore_index=True)
    layer.features = table
    layer.refresh()
    if result.probabilities is not None:
        write_probabilities(viewer, source, result, loaded)
    return layer


def write_probabilities(viewer, source, result, loaded) -> None:
    shape = plane_shape(source)
    classes = len(loaded.class_values)
    viewer.add_image(
        result.probabilities.array.reshape((classes, *shape)),
        channel_axis=0,
        name=[f"{source.name} p({loaded.name_of(v)})" for v in loaded.class_values],
        colormap="inferno",
        contrast_limits=(0.0, 1.0),
        visible=False,
        **matching_geometry(source),
    )


def object_features(objects: np.ndarray, stack, slices, volume: bool = False) -> dict[str, np.ndarray]:
    """The measurements of the predicted objects (:func:`~napari_unetseg.core.measure.measure_objects`),
    with the stack's intensities: one row per object; for 2D objects ``plane`` is the
    slice index in the stack, 3D objects (``volume``) are measured as volumes."""
    from napari_unetseg.core.measure import measure_objects

    planes = range(stack.shape[0]) if slices is None else slices
    if volume:
        image = np.stack([np.asarray(stack[index]) for index in planes])
        return measure_objects(objects, image, volume=True)
    columns = {}
    for row, index in enumerate(planes):  # one slice of the image read at a time
        one = measure_objects(objects[row : row + 1], np.asarray(stack[index : index + 1]))
        one["plane"] = np.full(len(one["label"]), index)
        for key, values in one.items():
            columns.setdefault(key, []).append(values)
    return {key: np.concatenate(parts) for key, parts in columns.items()}


class ClassFirst:
    """Probabilities of a ``(N, C, Y, X)`` stack kept as ``(K, N, Y, X)`` (napari's channel
    axis first); ``out[row] = (K, Y, X)`` stores the ``row``-th predicted slice, which is
    slice ``slices[row]`` when only some slices are predicted (the others stay 0)."""

    def __init__(self, stack_shape: tuple[int, ...], classes: int, slices) -> None:
        n, _, h, w = stack_shape
        self.array = new_output_array((classes, n, h, w), np.float32)
        self.targets = list(range(n)) if slices is None else list(slices)

    def __setitem__(self, row: int, slab: np.ndarray) -> None:
        self.array[:, self.targets[row]] = slab

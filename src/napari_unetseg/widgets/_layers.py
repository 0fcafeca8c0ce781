"""napari layers <-> the engine's arrays (no Qt here).

The engine works on image stacks ``(N, C, Y, X)`` and label stacks ``(N, Y, X)``. A
napari Image layer holds ``(..., Y, X)`` (or ``(..., Y, X, 3|4)`` when RGB); every
leading axis (time, z, ...) is flattened into ``N``. Several grey layers of the same
shape (what napari makes of a multichannel file) are stacked as channels. Arrays are
reshaped, not copied, so dask-backed layers stay lazy.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from napari.layers import Image, Labels

from napari_unetseg.core.errors import UserInputError

ERROR_COLORS = {0: "transparent", 1: "#2ca02c", 2: "#d62728", 3: "#1f77b4", None: "transparent"}


def full_resolution(layer: Image | Labels):
    """The layer's array; for a multiscale (pyramid) layer, its full-resolution level
    (lazy, as the layer holds it: e.g. OME-Zarr's level 0 as a dask array)."""
    return layer.data[0] if getattr(layer, "multiscale", False) else layer.data


def plane_shape(layer: Image | Labels) -> tuple[int, ...]:
    """The layer's shape (at full resolution) without a trailing RGB axis."""
    shape = tuple(full_resolution(layer).shape)
    return shape[:-1] if getattr(layer, "rgb", False) else shape


def _channels_last_to_stack(data, rgb: bool):
    """``(..., Y, X[, C])`` -> ``(N, C, Y, X)`` without loading the data."""
    if rgb:
        n = int(np.prod(data.shape[:-3], dtype=int))
        stack = data.reshape((n, *data.shape[-3:]))
        return stack.transpose(0, 3, 1, 2)
    n = int(np.prod(data.shape[:-2], dtype=int))
    return data.reshape((n, 1, *data.shape[-2:]))


def layer_channels(layer: Image) -> int:
    """Channels a layer contributes to the stack: 3 or 4 for RGB(A), else 1."""
    return full_resolution(layer).shape[-1] if layer.rgb else 1


def image_slice(layers: Sequence[Image], index: int) -> np.ndarray:
    """Slice ``index`` ``(C, Y, X)`` of :func:`image_stack`, reading only that slice."""
    return np.concatenate(
        [np.asarray(_channels_last_to_stack(full_resolution(layer), layer.rgb)[index]) for layer in layers]
    )


def image_stack(layers: Sequence[Image]):
    """Stack one or several Image layers into ``(N, C, Y, X)`` (a multiscale layer: its
    full-resolution level, read lazily).

    Raises
    ------
    UserInputError
        When no layer is given or the layers' shapes differ.
    """
    layers = list(layers)
    if not layers:
        raise UserInputError("choose an image layer first")
    shapes = {plane_shape(layer) for layer in layers}
    if len(shapes) > 1:
        names = ", ".join(f"{layer.name} {plane_shape(layer)}" for layer in layers)
        raise UserInputError(f"channel layers must have the same shape, got {names}")
    stacks = [_channels_last_to_stack(full_resolution(layer), layer.rgb) for layer in layers]
    if len(stacks) == 1:
        return stacks[0]
    return np.concatenate([np.asarray(s) for s in stacks], axis=1)


def labels_stack(layer: Labels, image_layer: Image | None = None) -> np.ndarray:
    """``(N, Y, X)`` view of a Labels layer, checked against the image layer's shape."""
    data = layer.data
    if image_layer is not None and tuple(data.shape) != plane_shape(image_layer):
        raise UserInputError(
            f"labels '{layer.name}' have shape {tuple(data.shape)} but image '{image_layer.name}' has "
            f"{plane_shape(image_layer)}: use 'Add annotation layer' to make a matching one"
        )
    n = int(np.prod(data.shape[:-2], dtype=int))
    return data.reshape((n, *data.shape[-2:]))


def current_index(viewer, layer: Image | Labels) -> int:
    """Flat slice index ``n`` (into the ``(N, ...)`` stack) of the slice the viewer shows."""
    shape = plane_shape(layer)
    if len(shape) <= 2:
        return 0
    world = np.asarray(viewer.dims.point)[-len(shape) :]
    data = np.asarray(layer.world_to_data(world))
    leading = np.clip(np.round(data[: len(shape) - 2]).astype(int), 0, np.array(shape[:-2]) - 1)
    return int(np.ravel_multi_index(tuple(leading), shape[:-2]))


def matching_geometry(layer: Image | Labels) -> dict:
    """``scale``/``translate`` keywords that place a new layer over ``layer``."""
    ndim = len(plane_shape(layer))
    return {"scale": tuple(layer.scale)[-ndim:], "translate": tuple(layer.translate)[-ndim:]}


def class_features(names: Sequence[str]) -> dict:
    """Labels ``features`` naming the classes: 0 = unpainted, 1.. = the given names."""
    return {"index": list(range(len(names) + 1)), "class": ["unpainted", *names]}


def parse_class_names(text: str) -> list[str]:
    """``"background, nucleus"`` -> ``["background", "nucleus"]`` (at least two classes)."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    if len(names) < 2:
        raise UserInputError("give at least two class names separated by commas, e.g. 'background, cell'")
    if len(set(names)) != len(names):
        raise UserInputError("class names must differ")
    return names


def own_labels_layer(viewer, name: str, kind: str, shape: tuple[int, ...], dtype) -> Labels | None:
    """The Labels layer ``name`` if this plugin made it as ``kind`` (its ``unetseg``
    metadata), the user has not painted on it, and it holds ``shape``/``dtype`` data;
    else ``None`` (the caller adds a new layer: nothing of the user's is overwritten)."""
    layer = viewer.layers[name] if name in viewer.layers else None
    if layer is None or not isinstance(layer, Labels):
        return None
    ours = layer.metadata.get("unetseg") == kind and not layer.metadata.get("unetseg_edited")
    return layer if ours and tuple(layer.data.shape) == tuple(shape) and layer.data.dtype == dtype else None


def class_names_of(layer: Labels, keep_unpainted: bool = False) -> dict[int, str]:
    """Label value -> class name of an annotation layer (its ``features``; "unpainted" left
    out unless ``keep_unpainted``)."""
    features = getattr(layer, "features", None)
    if features is None or "class" not in features or "index" not in features:
        return {}
    return {
        int(index): str(name)
        for index, name in zip(features["index"], features["class"])
        if str(name) and (keep_unpainted or str(name) != "unpainted")
    }


def zero_is_unpainted(layer: Labels) -> bool:
    """Whether the layer says its 0 means "unpainted" (the Annotate dock's layers do)."""
    return class_names_of(layer, keep_unpainted=True).get(0) == "unpainted"


def class_layer_style(values, names: dict[int, str], like: Labels | None = None) -> dict:
    """``colormap`` and ``features`` keywords for a layer of predicted classes: each class in
    the colour ``like`` (the annotation layer) gives it, the background class transparent so
    the image shows through, and the class names in the status bar."""
    from napari_unetseg.core.class_names import background_value

    like = like if like is not None else Labels(np.zeros((1, 1), np.uint8))
    background = background_value(values, names)
    colors: dict = {None: "transparent", 0: "transparent"}
    for value in values:
        colors[int(value)] = "transparent" if value == background else like.get_color(int(value))
    top = max([0, *[int(v) for v in values]])
    features = {"index": list(range(top + 1)), "class": [names.get(i, "") for i in range(top + 1)]}
    return {"colormap": colors, "features": features}

"""napari reader: TIFF/OME-TIFF stacks and OME-Zarr / zarr stores with their axes
(delegates to core.io and core.zarr_io)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from napari_unetseg.core.io import read_image
from napari_unetseg.core.zarr_io import ZarrImage, is_zarr, zarr_images

SUFFIXES = (".tif", ".tiff")


def napari_get_reader(path: str | list[str]) -> Callable | None:
    """Return :func:`read_layers` for TIFF paths and zarr stores, ``None`` for anything else."""
    paths = [path] if isinstance(path, str) else list(path)
    if not paths or not all(str(p).lower().endswith(SUFFIXES) or is_zarr(p) for p in paths):
        return None
    return read_layers


def read_layers(path: str | list[str]) -> list[tuple]:
    """One Image layer per file; a channel axis becomes separate channel layers.

    An OME-Zarr store gives its image as a multiscale (pyramid) layer, read lazily, with
    its pixel sizes as the layer scale, and each of its labels images as a Labels layer
    (class names as features); the docks predict a pyramid at full resolution.

    Raises
    ------
    UserInputError
        For unreadable files; napari shows the message as a notification.
    """
    paths = [path] if isinstance(path, str) else list(path)
    layers = []
    for p in paths:
        if is_zarr(p):
            layers += [_zarr_layer(image) for image in zarr_images(p)]
            continue
        data, axes = read_image(p)
        meta: dict = {"name": Path(p).name.split(".")[0], "metadata": {"axes": axes}}
        layers.append((data, _channels(meta, data.shape, data.dtype, axes), "image"))
    return layers


def _channels(meta: dict, shape, dtype, axes: str) -> dict:
    """RGB(A) for a trailing 3/4-value channel axis of unsigned integers, else one layer per channel."""
    if "C" in axes:
        channel = axes.index("C")
        if axes.endswith("C") and shape[-1] in (3, 4) and dtype.kind == "u":
            meta["rgb"] = True
        else:
            meta["channel_axis"] = channel
            meta["name"] = [f"{meta['name']} [{i}]" for i in range(shape[channel])]
    return meta


def _zarr_layer(image: ZarrImage) -> tuple:
    """A napari layer tuple of one image (or labels image) of a zarr store."""
    data = image.levels if len(image.levels) > 1 else image.levels[0]
    spatial = [s for a, s in zip(image.axes, image.scale) if a != "C"]
    meta: dict = {"name": image.name, "metadata": {"axes": image.axes}, "scale": spatial}
    meta["multiscale"] = len(image.levels) > 1
    if image.kind == "labels":
        if image.class_names:
            top = max(image.class_names)
            meta["features"] = {
                "index": list(range(top + 1)),
                "class": [image.class_names.get(i, "") for i in range(top + 1)],
            }
        return data, meta, "labels"
    return data, _channels(meta, image.data.shape, image.data.dtype, image.axes), "image"

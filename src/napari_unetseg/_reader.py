"""napari reader: TIFF/OME-TIFF stacks with their axes (delegates to core.io)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from napari_unetseg.core.io import read_image

SUFFIXES = (".tif", ".tiff")


def napari_get_reader(path: str | list[str]) -> Callable | None:
    """Return :func:`read_layers` for TIFF paths, ``None`` for anything else."""
    paths = [path] if isinstance(path, str) else list(path)
    if not paths or not all(str(p).lower().endswith(SUFFIXES) for p in paths):
        return None
    return read_layers


def read_layers(path: str | list[str]) -> list[tuple]:
    """One Image layer per file; a channel axis becomes separate channel layers.

    Raises
    ------
    UserInputError
        For unreadable files; napari shows the message as a notification.
    """
    paths = [path] if isinstance(path, str) else list(path)
    layers = []
    for p in paths:
        data, axes = read_image(p)
        meta: dict = {"name": Path(p).name.split(".")[0], "metadata": {"axes": axes}}
        if "C" in axes:
            channel = axes.index("C")
            if axes.endswith("C") and data.shape[-1] in (3, 4) and data.dtype.kind == "u":
                meta["rgb"] = True
            else:
                meta["channel_axis"] = channel
                meta["name"] = [f"{meta['name']} [{i}]" for i in range(data.shape[channel])]
        layers.append((data, meta, "image"))
    return layers

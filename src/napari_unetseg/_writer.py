"""napari writer: a Labels layer to a TIFF file, written atomically."""

from __future__ import annotations

from typing import Any

import numpy as np

from napari_unetseg.core.io import write_tiff_atomic


def write_labels(path: str, data: Any, meta: dict) -> list[str]:
    """Write labels to ``path`` (napari's save dialog has already confirmed replacing it)."""
    array = np.asarray(data)
    axes = "YX" if array.ndim == 2 else "ZYX" if array.ndim == 3 else None
    write_tiff_atomic(path, array, axes, overwrite=True)
    return [path]

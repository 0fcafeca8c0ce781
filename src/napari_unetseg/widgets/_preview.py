"""The Train dock's live preview layer (main thread).

What it costs the viewer decides how it is made: adding a Labels layer takes napari a few
hundred milliseconds (its controls, its overlays), so :class:`PreviewLayer` adds it once,
when the trainer is ready and before the first step; each preview then writes one slice
and refreshes the view. Its labels are ``uint8`` (or ``uint16``: see
:func:`~napari_unetseg.core.class_names.labels_dtype`), which napari draws without
remapping every pixel on the CPU, and only the slice shown before is cleared.
"""

from __future__ import annotations

import numpy as np

from napari_unetseg.core.class_names import labels_dtype
from napari_unetseg.widgets._layers import class_layer_style, class_names_of, own_labels_layer

PREVIEW_LAYER = "training preview"


class PreviewLayer:
    """The preview of one run: the classes in the annotation layer's colours, the
    background transparent, just below the annotation layer so the strokes stay on top.

    Parameters
    ----------
    viewer
        The napari viewer.
    shape
        The shape of the labels (the image's planes: ``(Y, X)`` or ``(..., Y, X)``).
    class_values
        The label values the run trains (the layer's dtype and colours follow them).
    annotations
        The Labels layer the run trains on (its scale, names and colours).
    """

    def __init__(self, viewer, shape: tuple[int, ...], class_values, annotations) -> None:
        self._viewer, self.shape, self._annotations = viewer, tuple(shape), annotations
        self._values = list(class_values)
        self.dtype = labels_dtype(self._values)
        self._shown = 0  # the slice that holds labels

    def layer(self):
        """The preview layer, if it is still there and still ours (else ``None``)."""
        return own_labels_layer(self._viewer, PREVIEW_LAYER, "preview", self.shape, self.dtype)

    def add(self):
        """Add the (empty) layer, or take over the last run's and clear it; returns it."""
        annotations = self._annotations
        style = class_layer_style(self._values, class_names_of(annotations), annotations)
        self._shown = 0
        layer = self.layer()
        if layer is not None:  # the last run's: this run's classes may differ, its slices are stale
            layer.colormap, layer.features = style["colormap"], style["features"]
            layer.data[...] = 0
            layer.refresh()
            return layer
        layer = self._viewer.add_labels(
            np.zeros(self.shape, dtype=self.dtype),
            name=PREVIEW_LAYER,
            opacity=0.5,
            scale=annotations.scale,
            translate=annotations.translate,
            metadata={"unetseg": "preview"},
            **style,
        )
        layers = self._viewer.layers
        if annotations in layers:
            layers.move(layers.index(layer), layers.index(annotations))
        layers.selection.active = annotations
        return layer

    def show(self, key: int | None, labels: np.ndarray) -> None:
        """Put the labels of slice ``key`` (``None`` for a single plane) into the layer,
        adding it again if the user removed it."""
        layer = self.layer()
        if layer is None:
            layer = self.add()
        flat = layer.data.reshape((-1, *self.shape[-2:]))
        key = key or 0
        if self._shown != key:
            flat[self._shown] = 0
        flat[key] = labels
        self._shown = key
        layer.refresh()

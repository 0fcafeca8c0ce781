"""Annotate dock: one click adds a Labels layer to paint training strokes on."""

from __future__ import annotations

import numpy as np
from magicgui.widgets import LineEdit, PushButton

from napari_unetseg.widgets._common import LayerDock, image_combo, wrapping_label
from napari_unetseg.widgets._layers import class_features, matching_geometry, parse_class_names, plane_shape
from napari_unetseg.widgets._run import user_call

HELP = (
    "Paint a few strokes of every class on a few slices with the brush (1, 2, ... = classes "
    "in the order named). Unpainted pixels (0) are ignored in sparse training."
)


class AnnotateWidget(LayerDock):
    """Add an annotation Labels layer matching an image: same shape, scale and translate."""

    def __init__(self, napari_viewer) -> None:
        self._image = image_combo(napari_viewer)
        self._classes = LineEdit(label="Classes", value="background, foreground")
        self._classes.native.setCursorPosition(0)  # show the start of the names, not their end
        self._add = PushButton(text="Add annotation layer")
        help_label = wrapping_label(HELP)
        super().__init__(napari_viewer, widgets=[self._image, self._classes, self._add, help_label])
        self._add.changed.connect(self.add_annotation_layer)
        self._end_layout()

    def add_annotation_layer(self):
        """Add the layer (a new one every time: nothing existing is touched) and return it."""
        return user_call(self._add_layer, "Annotation layer", self.option_names)

    def _add_layer(self):
        from napari_unetseg.core.errors import UserInputError

        image = self._image.value
        if image is None:
            raise UserInputError("open or choose an image first")
        names = parse_class_names(self._classes.value)
        data = np.zeros(plane_shape(image), dtype=np.uint8 if len(names) < 255 else np.uint16)
        layer = self._viewer.add_labels(
            data,
            name=f"{image.name} annotations",
            features=class_features(names),
            metadata={"unetseg": "annotations", "classes": names},
            **matching_geometry(image),
        )
        layer.brush_size = 5
        layer.selected_label = 1
        layer.mode = "paint"
        self._viewer.layers.selection.active = layer
        return layer

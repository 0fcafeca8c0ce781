"""Annotate dock: one click adds a Labels layer to paint training strokes on."""

from __future__ import annotations

import numpy as np
from magicgui.widgets import CheckBox, LineEdit, PushButton

from napari_unetseg.widgets._common import LayerDock, image_combo, wrapping_label
from napari_unetseg.widgets._layers import class_features, matching_geometry, parse_class_names, plane_shape
from napari_unetseg.widgets._run import user_call

HELP = (
    "Paint a few strokes of every class on a few slices with the brush (1, 2, ... = classes "
    "in the order named). Unpainted pixels (0) are ignored in sparse training."
)
OBJECTS_HELP = (
    "Objects: paint a few background strokes with label 1, then each object whole with its own "
    "label: press M for a new label (2, 3, ...), outline or fill it (bucket). Unpainted pixels (0) "
    "are ignored; a few objects on a few slices are enough to start."
)


class AnnotateWidget(LayerDock):
    """Add an annotation Labels layer matching an image: same shape, scale and translate."""

    def __init__(self, napari_viewer) -> None:
        self._image = image_combo(napari_viewer)
        self._classes = LineEdit(label="Classes", value="background, foreground")
        self._classes.native.setCursorPosition(0)  # show the start of the names, not their end
        self._objects = CheckBox(label="Objects (one label each)", value=False)
        self._add = PushButton(text="Add annotation layer")
        self._help = wrapping_label(HELP)
        widgets = [self._image, self._classes, self._objects, self._add, self._help]
        super().__init__(napari_viewer, widgets=widgets)
        self._add.changed.connect(self.add_annotation_layer)
        self._objects.changed.connect(self._show_kind)
        self._end_layout()

    def _show_kind(self) -> None:
        objects = self._objects.value
        self._classes.enabled = not objects
        self._help.value = OBJECTS_HELP if objects else HELP

    def add_annotation_layer(self):
        """Add the layer (a new one every time: nothing existing is touched) and return it."""
        return user_call(self._add_layer, "Annotation layer", self.option_names)

    def _add_layer(self):
        from napari_unetseg.core.errors import UserInputError

        image = self._image.value
        if image is None:
            raise UserInputError("open or choose an image first")
        if self._objects.value:  # background strokes (1) and objects (2, 3, ...: any number)
            names, dtype, first = ["background"], np.uint32, 2
            metadata = {"unetseg": "annotations", "objects": True}
        else:
            names = parse_class_names(self._classes.value)
            dtype, first = np.uint8 if len(names) < 255 else np.uint16, 1
            metadata = {"unetseg": "annotations", "classes": names}
        layer = self._viewer.add_labels(
            np.zeros(plane_shape(image), dtype=dtype),
            name=f"{image.name} annotations",
            features=class_features(names),
            metadata=metadata,
            **matching_geometry(image),
        )
        layer.brush_size = 5
        layer.selected_label = first
        layer.mode = "paint"
        self._viewer.layers.selection.active = layer
        return layer

"""Predict dock: tiled prediction of the current slice, a whole stack or several layers.

Predictions go to a Labels layer in the annotation numbering, so the user can correct
them and add them to the annotations (the human-in-the-loop cycle). A prediction layer
is updated in place only when this dock made it and the user has not painted on it;
otherwise a new layer is added: nothing of the user's is ever overwritten.
"""

from __future__ import annotations

import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    FileEdit,
    Label,
    ProgressBar,
    PushButton,
    SpinBox,
)

from napari_unetseg.core.config import PredictConfig, defaults
from napari_unetseg.core.errors import UserInputError
from napari_unetseg.core.events import PredictProgress, ZoomEvent
from napari_unetseg.core.object_sink import is_object_model, object_sink
from napari_unetseg.core.prediction import PredictionResult, is_volume_model
from napari_unetseg.core.tiling import DEFAULT_OVERLAP_PX
from napari_unetseg.widgets._common import (
    LayerDock,
    image_select,
    labels_combo,
    session_for,
    status_label,
)
from napari_unetseg.widgets._layers import (
    current_index,
    image_stack,
    layer_channels,
    plane_shape,
)
from napari_unetseg.widgets._outputs import (
    ClassFirst,
    new_output_array,
    object_features,
    write_classes,
    write_objects,
)
from napari_unetseg.widgets._run import Outcome, failure, start_worker, user_call

PREDICT = defaults(PredictConfig)
SOURCES = [("model just trained", "session"), ("model file(s)", "file")]


def model_sources() -> list[tuple[str, str]]:
    """The Predict dock's "Model" choices: this session's model, files, each shipped starter."""
    from napari_unetseg.core.starters import PREFIX, available

    return [*SOURCES, *((f"starter {name}", f"{PREFIX}{name}") for name in available())]


SCOPES = [("slice in view", "slice"), ("whole stack", "stack")]


class PredictWidget(LayerDock):
    """Choose a model and images, predict in a worker, show labels (and probabilities)."""

    def __init__(self, napari_viewer) -> None:
        self._source = ComboBox(label="Model", choices=model_sources(), value="session")
        # one file, or several (an ensemble: their class probabilities are averaged)
        self._model_file = FileEdit(label="Model file(s)", mode="rm", filter="*.pt *.zip", value="")
        self._model_info = Label(label="")
        self._head = ComboBox(label="UNet++ head", choices=[("as trained", 0)], value=0, visible=False)
        self._images = image_select(napari_viewer, "Image(s)")
        self._scope = ComboBox(label="Predict", choices=SCOPES, value="stack")
        self._tile = SpinBox(label="Tile size", value=PREDICT["tile_size"], min=32, max=4096, step=32)
        overlap = PREDICT["overlap"] if PREDICT["overlap"] is not None else DEFAULT_OVERLAP_PX
        self._overlap = SpinBox(label="Overlap (px)", value=overlap, min=0, max=512, step=16)
        self._tta = CheckBox(label="Flip TTA (4x slower)", value=PREDICT["tta"])
        self._probabilities = CheckBox(label="Probabilities layer", value=False)
        self._objects = CheckBox(label="Objects (one label each)", value=True, visible=False)
        self._objects.tooltip = (
            "The model separates objects; untick for its classes (background, interior, boundary)"
        )
        self._match_size = CheckBox(label="Match object size", value=PREDICT["match_size"], visible=False)
        self._match_size.tooltip = (
            "Where an image's objects are far smaller or larger than those the model learnt, "
            "predict it again zoomed to their size"
        )
        self._objects_3d = CheckBox(label="3D objects (z-stack)", value=False, visible=False)
        self._objects_3d.tooltip = (
            "The image's slices are a z-stack: join their objects in 3D (one watershed over the "
            "stack's classes) instead of numbering each slice's own. A 3D model always does"
        )
        self._run = PushButton(text="Predict")
        self._cancel = PushButton(text="Cancel", enabled=False)
        self._progress = ProgressBar(label="Progress", value=0, min=0, max=1)
        self._status = status_label("")
        self._annotations = labels_combo(napari_viewer, "Annotations", nullable=True)
        self._to_annotations = PushButton(text="Add slice in view to annotations")
        super().__init__(
            napari_viewer,
            widgets=[
                self._source, self._model_file, self._model_info, self._head, self._images, self._scope,
                self._tile, self._overlap, self._tta, self._probabilities, self._objects, self._match_size,
                self._objects_3d, self._run,
                self._cancel, self._progress, self._status, self._annotations, self._to_annotations,
            ],
        )  # fmt: skip
        self._end_layout()
        self._config_fields = {"tile_size": self._tile, "overlap": self._overlap, "tta": self._tta,
                               "match_size": self._match_size}  # fmt: skip
        self.controls = {**self._config_fields, "model": self._model_file, "head": self._head,
                         "semantic": self._objects, "objects_3d": self._objects_3d,
                         "scope": self._scope}  # fmt: skip
        self.worker = None
        self.last_output = None
        self._task = (1, 1)  # (image number, image count) of the running prediction
        # the slices predicted again at the model's object size: (image number, slice, zoom)
        self.zoomed: list[tuple[int, int, float]] = []
        self._session = session_for(napari_viewer)
        self._session.model_changed.connect(self._show_model_info)
        self._source.changed.connect(self._show_model_info)
        self._model_file.changed.connect(self._show_model_info)
        self._run.changed.connect(lambda: self.predict())
        self._cancel.changed.connect(self.cancel)
        self._to_annotations.changed.connect(lambda: self.add_to_annotations())
        self._refresh_choices()
        self._show_model_info()

    def _refresh_choices(self, event=None) -> None:
        super()._refresh_choices(event)
        if getattr(self, "_annotations", None) is not None and self._annotations.value is None:
            for layer in self._annotations.choices:
                if layer is not None and layer.metadata.get("unetseg") == "annotations":
                    self._annotations.value = layer

    # -- model ------------------------------------------------------------------------

    def _model_paths(self) -> list[str]:
        if self._source.value not in ("session", "file"):
            return [self._source.value]  # a starter
        return [str(path) for path in self._model_file.value]  # "rm" mode: always a tuple

    def _models(self) -> list:
        """The chosen model, or the members of an ensemble of model files (checked)."""
        from napari_unetseg.core.jobs import load_models

        if self._source.value == "session":
            if self._session.model is None:
                raise UserInputError(
                    "no model trained in this session yet: train one or choose 'model file(s)'"
                )
            return [self._session.model]
        return load_models(self._model_paths())

    def _show_model_info(self, event=None) -> None:
        self._model_file.visible = self._source.value == "file"
        self._show_heads(None)
        self._objects.visible = self._objects_3d.visible = self._match_size.visible = False
        if self._source.value == "session" and self._session.model is None:
            self._model_info.value = "no model trained yet"
            return
        if self._source.value == "file" and not self._model_paths():
            self._model_info.value = ""
            return
        try:
            models = self._models()
        except UserInputError as exc:
            self._model_info.value = exc.worded(self.option_names)
            return
        loaded = models[0]
        self._objects.visible = is_object_model(loaded)
        flat_objects = is_object_model(loaded) and not is_volume_model(loaded)  # a 2D object model
        self._objects_3d.visible = self._match_size.visible = flat_objects
        if len(models) > 1:
            names = ", ".join(sorted({member.spec.name for member in models}))
            self._model_info.value = (
                f"ensemble of {len(models)} models ({names}), {loaded.spec.in_channels} channel(s), "
                f"classes {_classes_text(loaded)}: probabilities averaged"
            )
            return  # pruning is offered for a single model only
        self._model_info.value = (
            f"{loaded.spec.name}, {loaded.spec.in_channels} channel(s), classes "
            f"{_classes_text(loaded)}, step {loaded.step}"
        )
        self._show_heads(loaded.spec)

    def _show_heads(self, spec) -> None:
        """A deeply supervised UNet++ can predict from a shallower head (pruned, faster)."""
        if spec is None:
            self._head.choices, self._head.value, self._head.visible = [("as trained", 0)], 0, False
            return
        current = spec.head or spec.depth
        prunable = spec.name.startswith("unetplusplus") and spec.deep_supervision and current > 1
        choices = [(f"L{current} (as trained)", 0)]
        if prunable:
            choices += [(f"L{level} (pruned: faster)", level) for level in range(current - 1, 0, -1)]
        self._head.choices = choices
        self._head.value = 0
        self._head.visible = prunable

    # -- predict ---------------------------------------------------------------------------

    def _groups(self, loaded) -> list[list]:
        """Selected layers grouped into images: all as channels, or each on its own."""
        layers = list(self._images.value)
        if not layers:
            raise UserInputError("choose one or more image layers")
        want = loaded.spec.in_channels
        if len(layers) > 1 and sum(layer_channels(layer) for layer in layers) == want:
            return [layers]
        for layer in layers:
            got = layer_channels(layer)
            if got != want:
                raise UserInputError(
                    f"'{layer.name}' has {got} channel(s) but the model expects {want}: "
                    f"select {want} channel layers or use a model trained on such images"
                )
        return [[layer] for layer in layers]

    def predict(self):
        """Start predicting in a worker; returns the worker, or ``None`` when refused."""
        if self.worker is not None:
            return None
        job = user_call(self._make_job, "Prediction", self.option_names, self._status)
        if job is None:
            return None
        self._set_running(True)
        self.zoomed = []
        self._status.value = "Predicting..."
        self.worker = start_worker(job, self._on_progress, self._on_done, self._on_aborted)
        return self.worker

    def _make_job(self):
        from napari_unetseg.core.checkpoint import pruned
        from napari_unetseg.core.prediction import iter_predict, labels_dtype

        models = self._models()
        if self._head.value and len(models) == 1:
            models = [pruned(models[0], self._head.value)]
        loaded = models[0]  # the members share classes and channels (checked)
        config = PredictConfig(**{name: widget.value for name, widget in self._config_fields.items()})
        probabilities = self._probabilities.value
        tasks = []
        for group in self._groups(loaded):
            stack = image_stack(group)
            slices = [current_index(self._viewer, group[0])] if self._scope.value == "slice" else None
            tasks.append((group, stack, slices))

        objects = is_object_model(loaded) and self._objects.value
        joined = objects and self._objects_3d.value and not is_volume_model(loaded)  # a 2D model's, in 3D
        if joined:
            self._check_objects_3d([group for group, _, _ in tasks])
        volume = objects and (joined or is_volume_model(loaded))

        def job():
            results = []
            for number, (group, stack, slices) in enumerate(tasks):
                self._task = (number + 1, len(tasks))
                # probabilities go straight into the array the layer will show: one copy
                out = ClassFirst(stack.shape, len(loaded.class_values), slices) if probabilities else None
                rows = stack.shape[0] if slices is None else len(slices)
                dtype = np.uint32 if objects else labels_dtype(loaded.class_values)
                labels = new_output_array((rows, *stack.shape[2:]), dtype)
                sink = object_sink(loaded, labels, rows, volume) if objects else labels
                result = yield from iter_predict(
                    models, stack, config, probabilities, slices, labels_out=sink, probabilities_out=out
                )
                result = PredictionResult(labels, result.probabilities)
                features = object_features(labels, stack, slices, volume) if objects else None
                results.append((group, slices, result, features, volume))
            return loaded, results

        return job

    def _check_objects_3d(self, groups: list[list]) -> None:
        """3D objects join one whole z-stack: refuse the slice in view, and layers with more
        than one axis besides Y and X (and the channels)."""
        if self._scope.value == "slice":
            raise UserInputError("joins a whole z-stack into 3D objects",
                                 ("predict the whole stack", "scope"), subject="objects_3d")  # fmt: skip
        for group in groups:
            shape = plane_shape(group[0])
            if len(shape) > 3:
                raise UserInputError(
                    f"joins the slices of one z-stack: '{group[0].name}' has {len(shape) - 2} axes "
                    f"besides Y and X {tuple(shape)}",
                    "predict one z-stack (a 3D layer) at a time",
                    subject="objects_3d",
                )

    def cancel(self) -> None:
        if self.worker is not None:
            self.worker.quit()

    def _set_running(self, running: bool) -> None:
        self._run.enabled = not running
        self._cancel.enabled = running

    def _on_progress(self, event: PredictProgress | ZoomEvent) -> None:
        if isinstance(event, ZoomEvent):
            self.zoomed.append((self._task[0], event.slice_index, event.zoom))
            return
        self._progress.max = event.total * event.n_slices
        self._progress.value = event.slice_index * event.total + event.done
        task, tasks = self._task
        image = f"image {task}/{tasks} · " if tasks > 1 else ""
        where = f"slice {event.slice_index + 1}/{event.n_slices} · tile {event.done}/{event.total}"
        self._status.value = image + where

    def _on_aborted(self) -> None:
        self.worker = None
        self._status.value = "Cancelled: no layer was changed."
        self._set_running(False)

    def _on_done(self, outcome: Outcome) -> None:
        self.worker = None
        self._set_running(False)
        message = failure(outcome, "Prediction", self.option_names)
        if message is not None:
            self._status.value = message
            return
        loaded, results = outcome.value
        outputs = [
            write_classes(self._viewer, group[0], slices, result, loaded, self._annotations.value)
            if features is None
            else write_objects(self._viewer, group[0], slices, result, features, loaded, volume)
            for group, slices, result, features, volume in results
        ]
        self.last_output = outputs[-1]
        self._status.value = "Done: " + ", ".join(f"'{layer.name}'" for layer in outputs) + self._zoom_note()

    def _zoom_note(self) -> str:
        """What the status line says of the slices predicted again at the model's object size."""
        if not self.zoomed:
            return ""
        _, tasks = self._task
        where = [
            (f"image {task} " if tasks > 1 else "") + f"slice {index + 1} at {zoom:.2f}x"
            for task, index, zoom in self.zoomed
        ]
        listed = ", ".join(where[:3]) + (f" and {len(where) - 3} more" if len(where) > 3 else "")
        return f". Match object size predicted again: {listed} (objects far from the model's size)"

    # -- human in the loop -----------------------------------------------------------------------

    def add_to_annotations(self):
        """Copy the slice in view of the last prediction into unpainted annotation pixels
        (objects each as a new label of the annotation layer, to correct and train on)."""
        return user_call(self._add_to_annotations, "Add to annotations", self.option_names, self._status)

    def _add_to_annotations(self):
        prediction, annotations = self.last_output, self._annotations.value
        if prediction is None or prediction not in self._viewer.layers:
            raise UserInputError("predict first")
        if annotations is None:
            raise UserInputError("choose the annotation layer to add to")
        if annotations.data.shape != prediction.data.shape:
            raise UserInputError("the annotation layer and the prediction have different shapes")
        shape = prediction.data.shape
        index = current_index(self._viewer, prediction)
        source = np.asarray(prediction.data.reshape((-1, *shape[-2:]))[index])
        target = np.asarray(annotations.data.reshape((-1, *shape[-2:]))[index])
        fill = (target == 0) & (source != 0)
        values = source[fill]
        if prediction.metadata.get("unetseg") == "objects":  # each object a new label, after 1 (background)
            values = values.astype(np.int64) + max(int(np.max(annotations.data)), 1)
            if values.size and values.max() > np.iinfo(annotations.data.dtype).max:
                kind = annotations.data.dtype
                raise UserInputError(f"the object ids do not fit '{annotations.name}' ({kind})")
        rows, cols = np.nonzero(fill)
        leading = np.unravel_index(np.full(rows.shape, index), shape[:-2]) if len(shape) > 2 else ()
        annotations.data_setitem((*leading, rows, cols), values)
        return int(fill.sum())


def _classes_text(loaded) -> str:
    """``"1 background, 2 nucleus"`` (or ``"1, 2"`` for a model without names)."""
    if not loaded.class_names:
        return ", ".join(map(str, loaded.class_values))
    return ", ".join(f"{v} {loaded.name_of(v)}" for v in loaded.class_values)

"""Train dock: fine-tune a U-Net / UNet++ on painted labels, with a live loss curve and preview.

The dock only gathers options and layers: its controls start at the defaults of the
core config classes and translate into a ``ModelSpec`` and a ``TrainConfig`` field by
field (:meth:`TrainWidget._spec`, :meth:`TrainWidget._config`), and the trainer comes
from :func:`~napari_unetseg.core.jobs.start_training`, as for ``unetseg train``; it runs
in a thread worker. Stop asks the trainer to save and stop after the current step;
Resume continues that run folder with its optimizer state.

While it trains, the dock follows the brush: strokes painted or erased on the labels
layer reach the running trainer a second after the last one
(:meth:`~napari_unetseg.core.training.Trainer.update_labels`), and the preview shows the
slice in view as prediction will label it. Closing the viewer stops the run after the
current step and saves it. The rarely changed options sit under "Advanced".
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    FloatSpinBox,
    Label,
    ProgressBar,
    PushButton,
    SpinBox,
)
from qtpy.QtWidgets import QApplication, QComboBox

from napari_unetseg.core.config import ModelSpec, RunOptions, TrainConfig
from napari_unetseg.core.device import describe_device, resolve_device
from napari_unetseg.core.errors import UserInputError
from napari_unetseg.core.events import LabelsEvent, PreviewEvent, StartEvent
from napari_unetseg.core.models import MODELS, parameter_count
from napari_unetseg.widgets._common import (
    LayerDock,
    image_select,
    labels_combo,
    session_for,
    status_label,
)
from napari_unetseg.widgets._layers import (
    class_names_of,
    current_index,
    image_stack,
    labels_stack,
    plane_shape,
    zero_is_unpainted,
)
from napari_unetseg.widgets._live import CloseWatch, QuietCollector, StrokeFollower
from napari_unetseg.widgets._preview import PreviewLayer
from napari_unetseg.widgets._run import Outcome, failure, show_info, start_worker, user_call, warn
from napari_unetseg.widgets._train_options import (
    LABEL_MODES,
    MODEL,
    OBJECTS_TIP,
    SEED_TIP,
    START_TIP,
    TRAIN,
    TRIES_TIP,
    UNPAINTED_TIP,
    WIDTHS,
    model_choices,
    start_choices,
    z_step,
)
from napari_unetseg.widgets._train_progress import MAX_TRIES, TrainProgress

TRAINER_READY = object()  # the job's first event: the trainer is built, training starts


class TrainWidget(LayerDock):
    """Pick image and labels, set the model and the run, then Start / Stop / Resume."""

    def __init__(self, napari_viewer) -> None:
        self._image = image_select(napari_viewer, "Image (channels)")
        self._labels_layer = labels_combo(napari_viewer, "Labels")
        self._mode = ComboBox(label="Labels are", choices=LABEL_MODES, value=TRAIN["label_mode"])
        self._objects = CheckBox(label="Objects (one label each)", value=TRAIN["objects"])
        self._objects.tooltip = OBJECTS_TIP
        self._model = ComboBox(label="Model", choices=self._model_choices, value=MODEL["name"])
        self._width = ComboBox(label="Base width", choices=WIDTHS, value=MODEL["base_channels"])
        self._depth = SpinBox(label="Depth", value=MODEL["depth"], min=2, max=5)
        self._size = Label(label="Parameters")
        self._patch = SpinBox(label="Patch size", value=TRAIN["patch_size"], min=32, max=1024, step=16)
        self._steps = SpinBox(label="Steps", value=TRAIN["steps"], min=1, max=1_000_000)
        self._batch = SpinBox(label="Batch size", value=TRAIN["batch_size"], min=1, max=512)
        lr = TRAIN["learning_rate"]
        self._lr = FloatSpinBox(label="Learning rate", value=lr, min=1e-6, max=1.0, step=1e-4)
        self._lr.native.setDecimals(6)
        self._seed = SpinBox(label="Seed", value=TRAIN["seed"], min=0, max=2**31 - 1)
        self._seed.tooltip = SEED_TIP
        self._tries = SpinBox(label="Tries", value=TRAIN["tries"], min=1, max=MAX_TRIES)
        self._tries.tooltip = TRIES_TIP
        self._start_from = ComboBox(label="Start from", choices=start_choices(), value="")
        self._start_from.tooltip = START_TIP
        _narrow(self._start_from.native)
        self._init = FileEdit(label="Model file", mode="r", filter="*.pt *.zip", value="", visible=False)
        self._run_dir = FileEdit(label="Run folder", mode="d", value="")
        self._unpainted = CheckBox(label="Learn from unpainted pixels", value=TRAIN["learn_unpainted"])
        self._unpainted.tooltip = UNPAINTED_TIP
        self._preview = CheckBox(label="Live preview", value=True)
        self._device = Label(label="Device", value=describe_device(resolve_device("auto")))
        self._start = PushButton(text="Start")
        self._stop = PushButton(text="Stop", enabled=False)
        self._resume = PushButton(text="Resume", enabled=False)
        self._save = PushButton(text="Save model as...", enabled=False)
        self._export = PushButton(text="Export for bioimage.io...", enabled=False)
        self._progress = ProgressBar(label="Progress", value=0, min=0, max=1)
        self._status = status_label("Paint a few strokes per class, then Start.")
        self._view = TrainProgress(self._progress, self._status)
        self.loss_plot, self.dice_plot = self._view.loss_plot, self._view.dice_plot
        buttons = Container(
            widgets=[self._start, self._stop, self._resume], layout="horizontal", labels=False
        )
        self.advanced = Container(
            widgets=[self._width, self._depth, self._size, self._patch, self._batch, self._lr,
                     self._seed, self._tries, self._run_dir, self._device],
        )  # fmt: skip
        super().__init__(
            napari_viewer,
            widgets=[
                self._image, self._labels_layer, self._mode, self._objects, self._model, self._start_from,
                self._init, self._steps,
                self._unpainted, self._preview, buttons, self._progress, self._status,
                Container(widgets=[self._save, self._export], layout="horizontal", labels=False),
            ],
        )  # fmt: skip
        self._add_folded("Advanced", self.advanced, position=10)
        self.native.layout().addWidget(self.loss_plot)
        self.native.layout().addWidget(self.dice_plot)
        self._end_layout()
        # the translation of the controls into the core configs (field -> control) ...
        self._model_fields = {"name": self._model, "base_channels": self._width, "depth": self._depth}
        self._train_fields = {"label_mode": self._mode, "steps": self._steps, "patch_size": self._patch,
                              "batch_size": self._batch, "learning_rate": self._lr, "seed": self._seed,
                              "tries": self._tries, "learn_unpainted": self._unpainted,
                              "objects": self._objects}  # fmt: skip
        # ... and what messages call the options (option key -> control)
        self.controls = {**self._train_fields, "model": self._model, "base_channels": self._width,
                         "depth": self._depth, "init": self._start_from, "out": self._run_dir,
                         "resume": self._resume}  # fmt: skip
        self.worker = None
        self._trainer = None
        self._run_path: Path | None = None
        self._result = None
        self._preview_source = None
        self._preview_layer: PreviewLayer | None = None  # the run's
        for widget in (self._model, self._width, self._depth):
            widget.changed.connect(self._update_size)
        self._mode.changed.connect(self._update_unpainted)
        self._start_from.changed.connect(
            lambda: setattr(self._init, "visible", self._start_from.value == "file")
        )
        self._labels_layer.changed.connect(self._follow_layer_kind)
        self._start.changed.connect(lambda: self.start())
        self._resume.changed.connect(lambda: self.start(resume=True))
        self._stop.changed.connect(self.stop)
        self._save.changed.connect(self._save_dialog)
        self._export.changed.connect(self._export_dialog)
        self._preview.changed.connect(lambda: self._send_preview_slice())
        napari_viewer.dims.events.current_step.connect(self._send_preview_slice)
        self._strokes = StrokeFollower(self._send_strokes)
        self._quiet = QuietCollector()
        self._closing = False
        self._close_watch = CloseWatch(self.native, self._on_window_close, self._on_dock_closed)
        self._refresh_choices()
        self._follow_layer_kind()
        self._update_size()

    # -- options ------------------------------------------------------------------

    def _spec(self) -> ModelSpec:
        """The model recipe the controls choose (the core defaults for everything else)."""
        return ModelSpec(**{name: widget.value for name, widget in self._model_fields.items()})

    def _model_choices(self, widget=None) -> list[tuple[str, str]]:
        try:
            return model_choices(self._width.value, self._depth.value)
        except AttributeError:  # called while the widgets are being built
            return model_choices(MODEL["base_channels"], MODEL["depth"])

    def _update_size(self) -> None:
        """Refresh the sizes in the model list; enable the depth only where the
        architecture has one (FCN and DeepLab v3+ do not)."""
        chosen = self._model.value
        with self._model.changed.blocked():
            self._model.reset_choices()  # relabelled entries are re-added: keep the choice
            self._model.value = chosen
        spec = self._spec()
        entry = MODELS[spec.name]
        self._model.tooltip = entry.description
        self._depth.enabled = "depth" in entry.options
        count = parameter_count(spec.replace(in_channels=1, num_classes=2))
        self._size.value = f"{count / 1e6:.2f} M ({spec.name})"

    def _follow_layer_kind(self, layer=None) -> None:
        """An annotation layer made for objects (Annotate dock) ticks Objects, one for classes clears it."""
        layer = self._labels_layer.value
        if layer is not None and layer.metadata.get("unetseg") == "annotations":
            self._objects.value = bool(layer.metadata.get("objects"))

    def _update_unpainted(self) -> None:
        """Dense labels leave no unpainted pixels to learn from."""
        self._unpainted.enabled = self._mode.value == "sparse"

    def _config(self) -> TrainConfig:
        """The training options the controls choose (the core defaults for everything else)."""
        values = {name: widget.value for name, widget in self._train_fields.items()}
        values["learn_unpainted"] = self._unpainted.enabled and self._unpainted.value
        return TrainConfig(**values)

    def _starting_model(self) -> Path | str | None:
        """What "Start from" chose: a starter (``starter:NAME``), a model file, or nothing."""
        choice = self._start_from.value
        if choice == "file":
            path = self._optional_path(self._init.value)
            if path is None:
                raise UserInputError("is a model file: choose one", subject="init")
            return path
        return choice or None

    @staticmethod
    def _optional_path(value) -> Path | None:
        return None if str(value) in ("", ".") else Path(value)

    def _new_run_dir(self) -> Path:
        chosen = self._optional_path(self._run_dir.value)
        if chosen is not None:
            return chosen
        root = Path(tempfile.gettempdir()) / "napari-unetseg"
        root.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=time.strftime("run-%Y%m%d-%H%M%S-"), dir=root))

    # -- start / stop ---------------------------------------------------------------

    def start(self, resume: bool = False):
        """Start (or resume) training in a worker; returns the worker, or ``None`` if refused."""
        if self.worker is not None:
            show_info("Training is already running: Stop it first.")
            return None
        job = user_call(lambda: self._make_job(resume), "Training", self.option_names, self._status)
        if job is None:
            return None
        self._view.start(new_run=not resume)
        self._warned = self._closing = False
        self._close_watch.watch_window()
        self._strokes.follow(self._labels_layer.value)
        self._set_running(True)
        self._status.value = "Preparing the data and the model..."
        self._quiet.begin()
        self.worker = start_worker(job, self._on_event, self._on_done, self._on_aborted)
        return self.worker

    def _make_job(self, resume: bool):
        images = list(self._image.value)
        labels_layer = self._labels_layer.value
        if not images:
            raise UserInputError("choose an image layer")
        if labels_layer is None:
            raise UserInputError("add an annotation layer (Annotate dock) or choose a Labels layer")
        stack = image_stack(images)
        labels = labels_stack(labels_layer, images[0])
        names = class_names_of(labels_layer)
        if self._mode.value == "dense" and zero_is_unpainted(labels_layer) and not np.all(labels):
            raise UserInputError(
                f"'{labels_layer.name}' is an annotation layer, where 0 means unpainted, but dense "
                "labels would teach 0 as a class",
                ("choose sparse", "label_mode"),
            )
        if resume and self._run_path is None:
            raise UserInputError("nothing to resume: Start a run first")
        spec, config = self._spec(), self._config()  # refused here before a folder is made
        run_dir = self._run_path if resume else self._new_run_dir()
        if MODELS[spec.name].spatial_dims == 3:  # voxel shape from the layer's scale (z, y, x)
            spec = spec.replace(anisotropy=z_step(images[0]))
        init = None if resume else self._starting_model()
        run = RunOptions(run_dir=run_dir, init=init, resume=resume)
        self._preview_source = (images, labels_layer)

        def job():
            from napari_unetseg.core.jobs import start_training

            trainer = start_training([stack], [labels], spec, config, run, names)
            trainer.preview_interval_s = 3.0
            self._trainer = trainer
            self._run_path = run_dir
            self._send_preview_slice()
            yield TRAINER_READY
            result = yield from trainer.run()
            return result

        return job

    def stop(self) -> None:
        """Ask the run to save and stop after the current step (or abandon it while it sets up)."""
        if self._request_stop():
            self._status.value = "Stopping after this step..."

    def _request_stop(self) -> bool:
        """Stop the trainer after this step (``True``), or abandon a worker still setting up."""
        if self._trainer is not None:
            self._trainer.request_stop()
            return True
        if self.worker is not None:
            self.worker.quit()
        return False

    def _on_aborted(self) -> None:
        self._quiet.end()
        self.worker = self._trainer = None
        self._status.value = "Stopped before the first step."
        self._set_running(False)

    def _set_running(self, running: bool) -> None:
        self._start.enabled = not running
        self._stop.enabled = running
        self._resume.enabled = not running and self._run_path is not None
        self._save.enabled = self._export.enabled = not running and self._result is not None

    # -- events (main thread) -----------------------------------------------------------

    def _on_event(self, event) -> None:
        if self._closing:
            return  # the viewer is going: touch no layer
        trainer = self._trainer
        if trainer is not None and trainer.warnings and not self._warned:
            self._warned = True
            for message in trainer.warnings:
                warn(f"Training: {message}")
        if isinstance(event, StartEvent):
            show_info(f"Training: {event.note}")
            self._status.value = event.note[0].upper() + event.note[1:]
        elif event is TRAINER_READY:
            self._add_preview_layer()
        elif isinstance(event, PreviewEvent):
            self._show_preview(event)
        elif isinstance(event, LabelsEvent):
            self._show_strokes_taken(event)
        else:
            self._view.show(event)

    def _on_done(self, outcome: Outcome) -> None:
        self._quiet.end()
        self.worker = None
        self._strokes.follow(None)
        trainer, self._trainer = self._trainer, None
        if self._closing:
            return
        message = failure(outcome, "Training", self.option_names)
        if message is None:
            result = outcome.value
            self._result = result
            path = result.run_dir / "model.pt" if result.run_dir else None
            session_for(self._viewer).set_model(result.loaded)
            verb = "Stopped" if result.stopped else "Finished"
            origin = _origin(getattr(trainer, "started_from", None))
            self._status.value = f"{verb} at step {result.loaded.step}{origin}. Model: {path}"
        elif trainer is None:
            self._status.value = f"Did not start: {message}"
        else:
            self._status.value = f"Stopped: {message}"
        self._set_running(False)

    # -- live preview -----------------------------------------------------------------------

    def _send_preview_slice(self, event=None) -> None:
        """Tell the trainer which slice to preview (it reads and normalises it itself)."""
        trainer = self._trainer
        if trainer is None:
            return
        if not self._preview.value:
            trainer.set_preview(None)
            return
        images, _ = self._preview_source
        trainer.set_preview(current_index(self._viewer, images[0]))

    def _add_preview_layer(self) -> None:
        """Once the trainer knows its classes, before the first step: the preview layer."""
        images, labels_layer = self._preview_source
        trainer = self._trainer
        if trainer is None:
            return
        shape = plane_shape(images[0])
        self._preview_layer = PreviewLayer(self._viewer, shape, trainer.class_values, labels_layer)
        if self._preview.value:
            self._preview_layer.add()

    def _show_preview(self, event: PreviewEvent) -> None:
        """Put the previewed slice into the preview layer, refreshing only the view."""
        if self._preview_layer is not None:
            self._preview_layer.show(event.key, event.labels)

    # -- following the brush ---------------------------------------------------------------------

    def _send_strokes(self, layer) -> bool:
        """Give the running trainer the layer's labels; ``False``: not yet (still setting up)."""
        trainer = self._trainer
        if self._closing or self.worker is None:
            return True  # nothing to send them to any more
        if trainer is None:
            return False
        images, _ = self._preview_source
        try:
            trainer.update_labels([labels_stack(layer, images[0])])
        except UserInputError as exc:
            self._status.value = f"Strokes not taken: {exc.worded(self.option_names)}"
            return True
        self._status.value = "New strokes: they join the training at the next step..."
        return True

    def _show_strokes_taken(self, event: LabelsEvent) -> None:
        if not event.accepted:
            self._status.value = f"Strokes not taken at step {event.step} ({event.reason}): training goes on"
            return
        text = (
            f"Strokes taken at step {event.step}: {event.painted:,} painted pixels on {event.slices} slice(s)"
        )
        if event.unknown:
            values = ", ".join(map(str, event.unknown))
            text += f"; label {values} is a new class: Stop, then Start to learn it"
            show_info(f"Training: label {values} is a new class: Stop, then Start a new run to learn it")
        self._status.value = text

    # -- closing ----------------------------------------------------------------------------------

    def _on_dock_closed(self) -> None:
        """The dock was closed: the run stops after this step and saves; no widget is touched."""
        self._closing = True
        self._request_stop()

    def _on_window_close(self) -> None:
        """The viewer closes: stop after this step and wait (a few seconds) for the save."""
        if self.worker is None:
            return
        self._closing = True
        self.stop()
        deadline = time.monotonic() + 120
        while self.worker is not None and time.monotonic() < deadline:
            QApplication.processEvents()
            time.sleep(0.01)

    # -- saving -------------------------------------------------------------------------------

    def save_model_to(self, path: str | Path, overwrite: bool = False) -> Path | None:
        """Write the trained model to ``path`` atomically (an existing file only if ``overwrite``)."""

        def save():
            from napari_unetseg.core.checkpoint import save_model

            if self._result is None:
                raise UserInputError("train a model first")
            target = Path(path)
            if target.exists() and not overwrite:
                raise UserInputError(f"{target} already exists: choose another name")
            return save_model(self._result.loaded, target)

        saved = user_call(save, "Save model", self.option_names, self._status)
        if saved is not None:
            self._status.value = f"Model saved to {saved}"
        return saved

    def export_to(self, path: str | Path, overwrite: bool = False):
        """Export the trained model as a bioimage.io package at ``path`` in a worker thread
        (the status line says when it is written); returns the worker."""
        from napari_unetseg.widgets._export import export_in_worker

        self._start.enabled = self._save.enabled = self._export.enabled = False
        self.worker = export_in_worker(
            self._result.loaded, path, overwrite, self, self._status, lambda: self._set_running(False)
        )
        return self.worker

    def _export_dialog(self) -> None:
        path = self._ask_save_path("Export for bioimage.io", "model.zip", "bioimage.io packages (*.zip)")
        if path:
            self.export_to(path, overwrite=True)

    def _save_dialog(self) -> None:
        path = self._ask_save_path("Save model", "model.pt", "Model files (*.pt)")
        if path:
            self.save_model_to(path, overwrite=True)


def _narrow(combo: QComboBox) -> None:
    """Let a combo box of long choices (a starter's description) shrink with the dock: its
    closed box elides the text, its open list shows every choice whole."""
    combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
    combo.setMinimumContentsLength(24)
    combo.view().setMinimumWidth(combo.view().sizeHintForColumn(0) + 24)


def _origin(started_from: str | None) -> str:
    """How the end of a run says what it started from: `` (from starter nuclei)``, or
    `` (from model.pt)`` for a model file; nothing for random weights."""
    if not started_from:
        return ""
    from napari_unetseg.core.starters import available

    starters = {str(s.path): name for name, s in available().items()}
    name = starters.get(started_from)
    return f" (from starter {name})" if name else f" (from {Path(started_from).name})"

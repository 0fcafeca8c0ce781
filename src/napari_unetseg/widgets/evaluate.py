"""Evaluate dock: score a prediction Labels layer against a ground-truth Labels layer.

A table of Dice, IoU, precision, recall, F1, HD and HD95 per class and their mean, Dice
per slice as a small plot, an error map layer (true positive / false positive / false
negative for one class) and CSV export. The scoring is
:func:`napari_unetseg.core.metrics.evaluate`, as in ``unetseg evaluate``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Label, PushButton
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QHeaderView, QTableWidget, QTableWidgetItem

from napari_unetseg.core.errors import UserInputError
from napari_unetseg.core.metrics import ERROR_KINDS, METRIC_NAMES, error_map
from napari_unetseg.core.objects import ObjectEvaluation
from napari_unetseg.widgets._common import LayerDock, labels_combo, status_label
from napari_unetseg.widgets._layers import ERROR_COLORS, class_names_of, matching_geometry, own_labels_layer
from napari_unetseg.widgets._object_view import (
    OBJECT_ERROR_LAYER,
    error_layer_options,
    object_headline,
    object_legend,
    object_table,
)
from napari_unetseg.widgets._plot import CurvePlot
from napari_unetseg.widgets._run import Outcome, as_job, failure, start_worker, user_call, warn

ERROR_LAYER = "error map"
ERROR_LEGEND = "  ".join(
    f'<span style="color:{ERROR_COLORS[value]}">&#9632;</span> {ERROR_KINDS[value]}' for value in (1, 2, 3)
)
SERIES_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b")
HEADERS = {"dice": "Dice", "iou": "IoU", "precision": "precision", "recall": "recall", "f1": "F1",
           "hausdorff": "Hausdorff (px)", "hd95": "HD95 (px)"}  # fmt: skip


class EvaluateWidget(LayerDock):
    """Pick prediction and truth layers, Evaluate, read the table, look at the error map."""

    def __init__(self, napari_viewer) -> None:
        self._prediction = labels_combo(napari_viewer, "Prediction")
        self._truth = labels_combo(napari_viewer, "Ground truth")
        self._skip_zero = CheckBox(label="Ignore ground-truth 0 (unlabelled)", value=False)
        self._skip_zero.tooltip = "Leave the pixels where the ground truth is 0 out of every score"
        self._surface = CheckBox(label="Hausdorff distances", value=True)
        self._objects = CheckBox(label="Objects (one label each)", value=False)
        self._objects.tooltip = (
            "Both layers hold one label per object: score objects one to one (F1 at IoU 0.5, AP over "
            "IoU 0.5:0.95, panoptic quality, splits and merges) and show which objects are wrong"
        )
        self._run = PushButton(text="Evaluate")
        self._error_class = ComboBox(label="Error map of class", choices=self._class_choices)
        self._legend = legend = Label(value=ERROR_LEGEND)
        legend.native.setTextFormat(Qt.TextFormat.RichText)
        self._export = PushButton(text="Export CSV...", enabled=False)
        self._status = status_label("")
        super().__init__(
            napari_viewer,
            widgets=[self._prediction, self._truth, self._objects, self._skip_zero, self._surface, self._run,
                     self._error_class, legend, self._status, self._export],
        )  # fmt: skip
        self.table = QTableWidget(0, 0)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.table.setVisible(False)
        self.slice_plot = CurvePlot("Dice per slice", y_range=(0.0, 1.0), empty_text="after Evaluate")
        self.native.layout().insertWidget(8, self.table)
        self.native.layout().insertWidget(9, self.slice_plot)
        self._end_layout()
        self.controls = {"ignore": self._skip_zero, "surface": self._surface, "objects": self._objects}
        self.worker = None
        self.result = None
        self._arrays = None
        self._run.changed.connect(lambda: self.evaluate())
        self._objects.changed.connect(self._show_kind)
        self._error_class.changed.connect(self._show_error_map)
        self._export.changed.connect(self._export_dialog)
        self._refresh_choices()
        self._default_pair()

    def _class_choices(self, _widget=None) -> list[tuple[str, int]]:
        result = getattr(self, "result", None)
        if result is None or isinstance(result, ObjectEvaluation):
            return []
        return [(f"{v} {result.name_of(v)}", v) for v in result.classes]

    def _default_pair(self, layers=None) -> None:
        """Pick a prediction layer and a truth layer by their names (new layers only)."""
        for layer in self._viewer.layers if layers is None else layers:
            if layer.name.endswith(("prediction", "objects")) and layer in self._prediction.choices:
                self._prediction.value = layer
                self._objects.value = layer.metadata.get("unetseg") == "objects"
            if "truth" in layer.name.lower() and layer in self._truth.choices:
                self._truth.value = layer

    def _refresh_choices(self, event=None) -> None:
        super()._refresh_choices(event)
        if event is not None and getattr(event, "type", "") == "inserted":
            self._default_pair([event.value])

    # -- evaluate ---------------------------------------------------------------------

    def evaluate(self):
        """Score in a worker; returns the worker, or ``None`` when refused."""
        if self.worker is not None:
            return None
        job = user_call(self._make_job, "Evaluation", self.option_names, self._status)
        if job is None:
            return None
        self._run.enabled = False
        self._status.value = "Evaluating..."
        self.worker = start_worker(job, lambda event: None, self._on_done)
        return self.worker

    def _make_job(self):
        from napari_unetseg.core.metrics import evaluate

        pred_layer, truth_layer = self._prediction.value, self._truth.value
        if pred_layer is None or truth_layer is None:
            raise UserInputError("choose a prediction and a ground-truth Labels layer")
        if pred_layer is truth_layer:
            raise UserInputError("prediction and ground truth are the same layer: choose two layers")
        pred, truth = np.asarray(pred_layer.data), np.asarray(truth_layer.data)
        if pred.shape != truth.shape:
            raise UserInputError(
                f"'{pred_layer.name}' {pred.shape} and '{truth_layer.name}' {truth.shape} differ in shape"
            )
        self._arrays = (pred, truth, truth_layer, pred_layer)
        if self._objects.value:
            from napari_unetseg.core.object_errors import object_error_map
            from napari_unetseg.core.objects import evaluate_objects

            volume = bool(pred_layer.metadata.get("volume"))

            def score_objects():
                return evaluate_objects(pred, truth, volume), object_error_map(pred, truth, volume)

            return as_job(score_objects)
        ignore = [0] if self._skip_zero.value else []
        surface = self._surface.value
        names = _layer_names(pred_layer) or _layer_names(truth_layer)
        return as_job(lambda: evaluate(pred, truth, ignore=ignore, surface=surface, names=names))

    def _on_done(self, outcome: Outcome) -> None:
        self.worker = None
        self._run.enabled = True
        message = failure(outcome, "Evaluation", self.option_names)
        if message is not None:
            self._status.value = message
            return
        if isinstance(outcome.value, tuple):
            self._show_objects(*outcome.value)
            return
        self.result = result = outcome.value
        self._fill_table(result)
        self._fill_plot(result)
        self._export.enabled = True
        self._status.value = f"{result.headline()} · {result.headline('iou').replace('iou', 'IoU')}"
        for warning in result.warnings:
            warn(f"Evaluation: {warning}")
            self._status.value += f"\nWarning: {warning}"
        self._error_class.reset_choices()
        self._error_class.value = result.classes[-1]
        self._show_error_map()

    def _show_kind(self) -> None:
        """Objects: no class options, the object error legend."""
        objects = self._objects.value
        for widget in (self._skip_zero, self._surface, self._error_class):
            widget.visible = not objects
        self._legend.value = object_legend() if objects else ERROR_LEGEND

    def _show_objects(self, evaluation, errors: np.ndarray) -> None:
        self.result = evaluation
        total = evaluation.total()
        rows = object_table(total)
        self.table.setRowCount(len(rows))
        self.table.setColumnCount(1)
        self.table.setVerticalHeaderLabels([title for title, _ in rows])
        self.table.setHorizontalHeaderLabels(["objects"])
        for i, (_, text) in enumerate(rows):
            self.table.setItem(i, 0, QTableWidgetItem(text))
        self._fit_table(len(rows))
        self.slice_plot.series.clear()
        self.slice_plot.title = "Objects per slice"
        if len(evaluation.images) > 1:
            self.slice_plot.add_series("F1 @ 0.5", SERIES_COLORS[0])
            f1 = [scores.f1 for scores in evaluation.images]
            self.slice_plot.set_data("F1 @ 0.5", range(len(f1)), f1)
        self._export.enabled = True
        self._status.value = object_headline(total)
        _, _, truth_layer, pred_layer = self._arrays
        kind = "object errors"
        layer = own_labels_layer(self._viewer, OBJECT_ERROR_LAYER, kind, errors.shape, errors.dtype)
        if layer is not None:
            layer.data = errors
        else:
            self._viewer.add_labels(
                errors, name=OBJECT_ERROR_LAYER, **error_layer_options(), **matching_geometry(truth_layer)
            )
        if pred_layer in self._viewer.layers:
            pred_layer.visible = False

    def _fit_table(self, rows: int) -> None:
        height = self.table.horizontalHeader().height() + sum(self.table.rowHeight(i) for i in range(rows))
        self.table.setFixedHeight(height + 2 * self.table.frameWidth())
        self.table.setVisible(True)

    def _fill_table(self, result) -> None:
        """One row per metric, one column per class and one for the mean over classes."""
        names = [n for n in METRIC_NAMES if n in result.mean]
        columns = [(result.name_of(v), result.per_class[v]) for v in result.classes] + [("mean", result.mean)]
        self.table.setRowCount(len(names))
        self.table.setColumnCount(len(columns))
        self.table.setVerticalHeaderLabels([HEADERS[n] for n in names])
        self.table.setHorizontalHeaderLabels([title for title, _ in columns])
        for j, (_, metrics) in enumerate(columns):
            for i, name in enumerate(names):
                value = metrics[name]
                text = "n/a" if not np.isfinite(value) else f"{value:.3f}" if value < 100 else f"{value:.1f}"
                self.table.setItem(i, j, QTableWidgetItem(text))
        self._fit_table(len(names))

    def _fill_plot(self, result) -> None:
        self.slice_plot.series.clear()
        self.slice_plot.title = "Dice per slice"
        for i, v in enumerate(result.classes):
            self.slice_plot.add_series(result.name_of(v), SERIES_COLORS[i % len(SERIES_COLORS)])
            dice = [row[v]["dice"] for row in result.per_slice]
            self.slice_plot.set_data(result.name_of(v), range(len(dice)), dice)

    def _show_error_map(self, event=None) -> None:
        value = self._error_class.value
        if self._arrays is None or value is None:
            return
        pred, truth, truth_layer, pred_layer = self._arrays
        errors = error_map(pred, truth, value, ignore=[0] if self._skip_zero.value else ())
        layer = own_labels_layer(self._viewer, ERROR_LAYER, "error map", errors.shape, errors.dtype)
        if layer is not None:
            layer.data = errors
        else:
            layer = self._viewer.add_labels(
                errors,
                name=ERROR_LAYER,
                colormap=ERROR_COLORS,
                features={"index": list(range(len(ERROR_KINDS))), "error": list(ERROR_KINDS)},
                metadata={"unetseg": "error map"},
                opacity=0.6,
                **matching_geometry(truth_layer),
            )
        layer.metadata["class"] = value
        if pred_layer in self._viewer.layers:
            pred_layer.visible = False  # its colours would mix with the error map's

    # -- export ------------------------------------------------------------------------

    def export_csv(self, path: str | Path, overwrite: bool = False) -> Path | None:
        """Write the per-class and per-slice table as CSV."""

        def write():
            from napari_unetseg.core.workflows import write_evaluation, write_object_evaluation

            if self.result is None:
                raise UserInputError("evaluate first")
            if isinstance(self.result, ObjectEvaluation):
                write_object_evaluation(self.result, None, path, overwrite)
            else:
                write_evaluation(self.result, csv_path=path, overwrite=overwrite)
            return Path(path)

        written = user_call(write, "Export CSV", self.option_names, self._status)
        if written is not None:
            self._status.value = f"Saved {written}"
        return written

    def _export_dialog(self) -> None:
        path = self._ask_save_path("Export CSV", "evaluation.csv", "CSV (*.csv)")
        if path:
            self.export_csv(path, overwrite=True)


def _layer_names(layer) -> dict[int, str]:
    """The class names a prediction layer (``metadata``) or annotation layer (features) carries."""
    names = layer.metadata.get("class_names") or class_names_of(layer)
    return {int(v): str(n) for v, n in names.items()}

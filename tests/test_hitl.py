"""The human-in-the-loop cycle in a real viewer: the preview is the prediction, training
follows the brush, overlays let the image show, names travel, docks fit a laptop,
closing during training saves the run."""

from __future__ import annotations

import numpy as np
import pytest
from test_widgets import open_dock, tiny_model_file, wait_for, warnings_shown  # noqa: F401 (a fixture)

from napari_unetseg.core.sample import make_sample

pytestmark = pytest.mark.gui


def unequal_stack(seed=5):
    """The sample stack with slices of very different brightness and offset."""
    sample = make_sample(n_slices=4, size=96, painted_slices=4, seed=seed)
    gain = np.array([1.0, 0.25, 3.0, 9.0], np.float32)[:, None, None]
    offset = np.array([0, 40, 0, 300], np.float32)[:, None, None]
    return sample, sample.image.astype(np.float32) * gain + offset


def small_run(train, image, labels, run_dir, steps):
    train._image.value = [image]
    train._labels_layer.value = labels
    train._width.value = 8
    train._patch.value = 64
    train._batch.value = 4
    train._steps.value = steps
    train._run_dir.value = str(run_dir)


def test_the_final_preview_is_what_predict_gives(make_napari_viewer, qtbot, tmp_path):
    viewer = make_napari_viewer()
    sample, data = unequal_stack()
    image = viewer.add_image(data, name="nuclei")
    annotations = open_dock(viewer, "Annotate").add_annotation_layer()
    annotations.data[:] = sample.strokes
    train = open_dock(viewer, "Train")
    small_run(train, image, annotations, tmp_path / "run", steps=40)
    viewer.dims.set_current_step(0, 3)  # the brightest slice in view: it is previewed
    assert train.start() is not None
    wait_for(qtbot, train)
    preview = viewer.layers["training preview"].data[3]
    predict = open_dock(viewer, "Predict")
    predict._images.value = [image]
    predict._scope.value = "stack"
    predict.predict()
    wait_for(qtbot, predict)
    predicted = viewer.layers["nuclei prediction"].data[3]
    assert len(np.unique(predicted)) == 2
    assert np.mean(preview == predicted) >= 0.999


def textures(size=96):
    """Three vertical bands: dark (A), bright (B), mid-grey (C): C goes with A or with B
    by where the strokes put the threshold."""
    rng = np.random.default_rng(0)
    image = np.full((size, size), 0.1, np.float32)
    third = size // 3
    image[:, third : 2 * third] = 0.9
    image[:, 2 * third :] = 0.5
    return image + rng.normal(0, 0.02, image.shape).astype(np.float32), third


def test_strokes_painted_while_training_change_the_preview_there(make_napari_viewer, qtbot, tmp_path):
    viewer = make_napari_viewer()
    data, third = textures()
    image = viewer.add_image(data, name="bands")
    annotations = open_dock(viewer, "Annotate").add_annotation_layer()
    annotations.data[10:86:4, 4 : third - 4] = 1  # A: class 1
    annotations.data[10:86:4, third + 4 : 2 * third - 4] = 2  # B: class 2
    annotations.data[10:86:4, 2 * third + 4 : -4] = 1  # C: class 1, for now
    annotations.refresh()
    train = open_dock(viewer, "Train")
    small_run(train, image, annotations, tmp_path / "run", steps=100_000)  # stopped below
    previews, show_preview = [], train._show_preview
    train._show_preview = lambda event: (show_preview(event), previews.append(event.step))
    assert train.start() is not None
    qtbot.waitUntil(lambda: bool(previews) and previews[-1] >= 60, timeout=240_000)  # one after step 60
    band_c = (slice(None), slice(2 * third + 4, None))
    assert np.mean(viewer.layers["training preview"].data[band_c] == 1) > 0.5  # C learned as 1
    updates, show = [], train._show_strokes_taken
    train._show_strokes_taken = lambda event: (updates.append(event), show(event))
    rows, cols = np.nonzero(annotations.data[band_c] == 1)
    annotations.data_setitem((rows, cols + 2 * third + 4), 2)  # the user paints C as class 2
    qtbot.waitUntil(lambda: bool(updates), timeout=60_000)
    assert updates[0].accepted and "Strokes taken" in train._status.value
    assert train.worker is not None  # the same run goes on
    taken = updates[0].step
    qtbot.waitUntil(lambda: train._progress.value >= taken + 140, timeout=240_000)  # as fast or slow as it is
    train.stop()
    wait_for(qtbot, train)
    assert np.mean(viewer.layers["training preview"].data[band_c] == 2) > 0.8  # the last preview: the model
    assert train._result.loaded.step >= taken + 140


def test_overlays_and_names_travel_from_annotate_to_evaluate(make_napari_viewer, qtbot, tmp_path):
    viewer = make_napari_viewer()
    sample = make_sample(n_slices=2, size=96, painted_slices=2, seed=6)
    image = viewer.add_image(sample.image, name="cells")
    annotate = open_dock(viewer, "Annotate")
    annotate._classes.value = "background, nucleus"
    annotations = annotate.add_annotation_layer()
    annotations.data[:] = sample.strokes
    truth = viewer.add_labels(sample.truth, name="ground truth")
    train = open_dock(viewer, "Train")
    small_run(train, image, annotations, tmp_path / "run", steps=30)
    train.start()
    wait_for(qtbot, train)
    assert train._result.loaded.class_names == ("background", "nucleus")
    # the preview: under the strokes, background transparent, nucleus in the strokes' colour
    layers = list(viewer.layers)
    preview = viewer.layers["training preview"]
    assert layers.index(preview) < layers.index(annotations)
    assert preview.get_color(1)[3] == 0
    np.testing.assert_allclose(preview.get_color(2), annotations.get_color(2))

    predict = open_dock(viewer, "Predict")
    assert "1 background, 2 nucleus" in predict._model_info.value
    predict._images.value = [image]
    predict._scope.value = "stack"
    predict.predict()
    wait_for(qtbot, predict)
    prediction = viewer.layers["cells prediction"]
    assert prediction.get_color(1)[3] == 0 and prediction.get_color(2)[3] > 0
    assert list(prediction.features["class"][1:3]) == ["background", "nucleus"]

    evaluate = open_dock(viewer, "Evaluate")
    evaluate._prediction.value, evaluate._truth.value = prediction, truth
    evaluate.evaluate()
    wait_for(qtbot, evaluate)
    headers = [evaluate.table.horizontalHeaderItem(i).text() for i in range(evaluate.table.columnCount())]
    assert headers == ["background", "nucleus", "mean"]
    assert evaluate._status.value.startswith("nucleus Dice")  # the foreground, by name
    picker = evaluate._error_class.native
    assert [picker.itemText(i) for i in range(picker.count())] == ["1 background", "2 nucleus"]
    assert "error map" in viewer.layers and not prediction.visible  # no colours mixed
    csv = evaluate.export_csv(tmp_path / "scores.csv")
    assert "nucleus" in csv.read_text()


def test_docks_fit_a_laptop_screen(make_napari_viewer, qtbot):
    viewer = make_napari_viewer(show=True)
    window = viewer.window._qt_window
    window.resize(1366, 768)
    qtbot.wait(50)
    bare = window.minimumSizeHint().height()
    docks = [open_dock(viewer, name) for name in ("Annotate", "Train", "Predict", "Evaluate")]
    qtbot.wait(200)
    assert window.height() <= 768
    train = docks[1]
    assert not train.folded.isExpanded()  # seed, tries, learning rate, folders: under Advanced
    train.folded.expand(animate=False)
    qtbot.wait(200)
    assert window.height() <= 768 and window.minimumSizeHint().height() <= max(bare, 600)
    for dock in docks:
        assert dock.native.minimumSizeHint().height() < 300  # scrolls rather than stretching
    for dock in docks:  # the window was never made taller, so closing leaves nothing to shrink
        viewer.window.remove_dock_widget(dock.native)
    qtbot.wait(200)
    assert window.minimumSizeHint().height() == bare
    window.resize(1366, 600)
    qtbot.wait(100)
    assert window.height() <= 600


def painted_sample(viewer, seed):
    """The sample (2 slices of 96 px) and an Annotate layer holding its strokes; a Train dock."""
    sample = make_sample(n_slices=2, size=96, painted_slices=2, seed=seed)
    image = viewer.add_image(sample.image, name="cells")
    annotations = open_dock(viewer, "Annotate").add_annotation_layer()
    annotations.data[:] = sample.strokes
    return sample, image, annotations, open_dock(viewer, "Train")


def training_a_while(viewer, qtbot, tmp_path):
    """A long run of the Train dock, two steps in."""
    _, image, annotations, train = painted_sample(viewer, seed=7)
    small_run(train, image, annotations, tmp_path / "run", steps=100_000)
    train.start()
    qtbot.waitUntil(lambda: train._progress.value >= 2, timeout=120_000)
    return train


def test_closing_the_viewer_during_training_saves_the_run(make_napari_viewer, qtbot, tmp_path):
    viewer = make_napari_viewer()
    train = training_a_while(viewer, qtbot, tmp_path)
    viewer.close()
    assert train.worker is None
    from napari_unetseg.core.checkpoint import load_model

    assert load_model(tmp_path / "run" / "model.pt").step >= 2


def test_closing_the_dock_during_training_saves_the_run(make_napari_viewer, qtbot, tmp_path):
    viewer = make_napari_viewer()
    train = training_a_while(viewer, qtbot, tmp_path)
    viewer.window.remove_dock_widget(train.native)
    qtbot.waitUntil(lambda: train.worker is None, timeout=120_000)
    from napari_unetseg.core.checkpoint import load_model

    assert load_model(tmp_path / "run" / "model.pt").step >= 2


def test_the_preview_costs_the_viewer_little_while_training(make_napari_viewer, qtbot, tmp_path, monkeypatch):
    """What stalled the viewer while it trained: the preview layer was added at the first
    preview (mid-run), held int64 labels that napari remaps on the CPU at every refresh,
    every refresh cleared the whole stack, each new layer made the model list build
    every architecture again to count its parameters, and Python's full garbage
    collections walked the viewer's millions of objects (0.3 s holding the GIL)."""
    import gc

    import napari_unetseg.core.models as models

    viewer = make_napari_viewer()
    sample, image, annotations, train = painted_sample(viewer, seed=10)
    built, build = [], models.build_model
    monkeypatch.setattr(models, "build_model", lambda spec: (built.append(spec.name), build(spec))[1])
    viewer.add_labels(np.zeros((2, 96, 96), np.uint8), name="another layer")  # every dock refreshes
    viewer.add_labels(np.zeros((2, 96, 96), np.uint8), name="one more")
    assert built == []  # the model list's sizes are known already
    small_run(train, image, annotations, tmp_path / "run", steps=100_000)
    previews, layer_there, show_preview = [], [], train._show_preview

    def on_preview(event) -> None:
        layer_there.append("training preview" in viewer.layers)
        previews.append(event.step)
        show_preview(event)

    train._show_preview = on_preview
    viewer.dims.set_current_step(0, 1)
    train.start()
    qtbot.waitUntil(lambda: "training preview" in viewer.layers, timeout=120_000)
    assert layer_there in ([], [True])  # there before the first preview (a busy machine may show one)
    layer = viewer.layers["training preview"]
    assert layer.data.dtype == np.uint8  # napari draws 1- and 2-byte labels without remapping
    assert gc.get_freeze_count() > 0  # full collections leave the objects of before the run alone
    qtbot.waitUntil(lambda: bool(previews), timeout=120_000)
    viewer.dims.set_current_step(0, 0)
    shown = len(previews)
    qtbot.waitUntil(lambda: len(previews) > shown, timeout=120_000)
    train.stop()
    wait_for(qtbot, train)
    assert layer.data[0].any() and not layer.data[1].any()  # the slice in view; the other cleared
    assert viewer.layers["training preview"] is layer  # the same layer all along
    assert gc.get_freeze_count() == 0  # and are collected again after it


def test_dense_mode_on_strokes_is_refused_or_warned(make_napari_viewer, qtbot, tmp_path, warnings_shown):  # noqa: F811
    viewer = make_napari_viewer()
    sample, image, annotations, train = painted_sample(viewer, seed=8)
    small_run(train, image, annotations, tmp_path / "run", steps=2)
    train._mode.value = "dense"
    assert train.start() is None  # the Annotate dock's layer says 0 is unpainted
    assert "0 means unpainted" in warnings_shown[-1] and "choose sparse ('Labels are')" in warnings_shown[-1]
    # a plain Labels layer of strokes: trained, with a warning
    strokes = viewer.add_labels(sample.strokes, name="strokes")
    train._labels_layer.value = strokes
    train.start()
    wait_for(qtbot, train)
    assert any("train with sparse labels" in message for message in warnings_shown)


def test_a_model_without_names_still_reads(make_napari_viewer, qtbot, tmp_path):
    sample = make_sample(n_slices=2, size=64, painted_slices=2, seed=9)
    path = tiny_model_file(tmp_path / "model.pt", sample)
    viewer = make_napari_viewer()
    predict = open_dock(viewer, "Predict")
    predict._source.value = "file"
    predict._model_file.value = str(path)
    assert "classes 1, 2" in predict._model_info.value


def test_plots_read_with_one_point_and_with_none(qtbot):
    from napari_unetseg.widgets._plot import CurvePlot

    plot = CurvePlot("Dice per slice", y_range=(0.0, 1.0), empty_text="after Evaluate")
    qtbot.addWidget(plot)
    plot.resize(300, 150)
    plot.grab()  # paints the hint, no axes
    plot.add_series("nucleus", "#1f77b4")
    plot.set_data("nucleus", [0], [0.9])  # a single 2D image: one slice
    x0, x1, _, _ = plot._ranges()
    assert (x0, x1) == (0.0, 1.0)  # not an axis ending at 1e-09
    plot.grab()

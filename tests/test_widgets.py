"""The dock widgets in a real napari viewer: annotate, train, predict, evaluate."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from napari_unetseg.core.sample import make_sample

pytestmark = pytest.mark.gui

DOCKS = ("Annotate", "Train", "Predict", "Evaluate")


def open_dock(viewer, name):
    _, widget = viewer.window.add_plugin_dock_widget("napari-unetseg", name)
    return widget


def wait_for(qtbot, widget, timeout=240_000):
    """Wait until the widget's worker has finished (its slots have run)."""
    qtbot.waitUntil(lambda: widget.worker is None, timeout=timeout)


def tiny_model_file(path, sample, channels=1, steps=1, **overrides):
    """Train a tiny U-Net for a few steps on ``sample`` and save it to ``path``."""
    from napari_unetseg.core.checkpoint import save_model
    from napari_unetseg.core.config import ModelSpec, TrainConfig
    from napari_unetseg.core.training import train

    images = np.repeat(sample.image[:, None], channels, axis=1)
    config = TrainConfig(steps=steps, patch_size=32, batch_size=2, **overrides)
    result = train([images], [sample.strokes], ModelSpec(base_channels=8, depth=2), config)
    return save_model(result.loaded, path)


def predict_dock_with_file(viewer, model_path):
    """The Predict dock, set to use a model file."""
    predict = open_dock(viewer, "Predict")
    predict._source.value = "file"
    predict._model_file.value = str(model_path)
    return predict


def train_from_dock(qtbot, train, image, labels, run_dir, steps=3):
    """Run the Train dock on ``image``/``labels`` for ``steps`` into ``run_dir``; the saved model."""
    from napari_unetseg.core.checkpoint import load_model

    train._image.value = [image]
    train._labels_layer.value = labels
    train._steps.value = steps
    train._run_dir.value = str(run_dir)
    assert train.start() is not None
    wait_for(qtbot, train)
    return load_model(run_dir / "model.pt")


@pytest.fixture
def warnings_shown(monkeypatch):
    """Collect the messages the docks show as notifications."""
    from napari_unetseg.widgets import _run

    shown = []
    monkeypatch.setattr(_run, "show_warning", lambda message: shown.append(message))
    monkeypatch.setattr(_run, "show_error", lambda message: shown.append(message))
    return shown


def test_docks_open_from_the_manifest(make_napari_viewer):
    from npe2 import PluginManager

    viewer = make_napari_viewer()
    manager = PluginManager.instance()
    manager.discover()
    manifest = manager.get_manifest("napari-unetseg")
    assert {w.display_name for w in manifest.contributions.widgets} == set(DOCKS)
    viewer.add_image(np.zeros((2, 32, 32), np.float32), name="img")
    for name in DOCKS:
        widget = open_dock(viewer, name)
        assert widget.native.isVisible() or widget.native.parent() is not None


def test_annotation_layer_matches_the_image(make_napari_viewer):
    viewer = make_napari_viewer()
    image = np.zeros((3, 40, 50), np.uint16)
    viewer.add_image(image, name="cells", scale=(2.0, 0.5, 0.5), translate=(1, 2, 3))
    widget = open_dock(viewer, "Annotate")
    widget._classes.value = "background, nucleus, membrane"
    layer = widget.add_annotation_layer()
    assert layer.data.shape == (3, 40, 50) and layer.data.dtype == np.uint8
    assert tuple(layer.scale) == (2.0, 0.5, 0.5) and tuple(layer.translate) == (1, 2, 3)
    assert list(layer.features["class"]) == ["unpainted", "background", "nucleus", "membrane"]
    assert not layer.data.any() and layer.mode == "paint"


def test_annotation_of_an_rgb_image_drops_the_colour_axis(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((30, 20, 3), np.uint8), name="rgb", rgb=True)
    layer = open_dock(viewer, "Annotate").add_annotation_layer()
    assert layer.data.shape == (30, 20)


def test_bad_class_names_notify_and_add_nothing(make_napari_viewer, warnings_shown):
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((20, 20), np.float32), name="img")
    widget = open_dock(viewer, "Annotate")
    widget._classes.value = "only-one"
    assert widget.add_annotation_layer() is None
    assert len(viewer.layers) == 1
    assert "at least two class names" in warnings_shown[-1]


def test_train_refuses_unpainted_labels_without_touching_layers(make_napari_viewer, qtbot, warnings_shown):
    viewer = make_napari_viewer()
    viewer.add_image(np.random.default_rng(0).random((2, 48, 48)).astype(np.float32), name="img")
    labels = viewer.add_labels(np.zeros((2, 48, 48), np.uint8), name="annotations")
    widget = open_dock(viewer, "Train")
    widget._labels_layer.value = labels
    widget._steps.value = 5
    widget.start()
    wait_for(qtbot, widget)
    assert "no painted pixels" in warnings_shown[-1]
    assert not labels.data.any() and [layer.name for layer in viewer.layers] == ["img", "annotations"]
    assert widget._start.enabled


def test_train_refuses_a_shape_mismatch(make_napari_viewer, warnings_shown):
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((2, 48, 48), np.float32), name="img")
    viewer.add_labels(np.ones((2, 40, 48), np.uint8), name="annotations")
    widget = open_dock(viewer, "Train")
    assert widget.start() is None
    assert "shape" in warnings_shown[-1] and "Add annotation layer" in warnings_shown[-1]


def test_whole_workflow_strokes_to_evaluation(make_napari_viewer, qtbot, tmp_path):
    """Sample image + painted strokes -> train -> predict the stack -> evaluate."""
    viewer = make_napari_viewer()
    sample = make_sample(n_slices=3, size=128, painted_slices=2, seed=3)
    image = viewer.add_image(sample.image, name="cells")
    annotations = open_dock(viewer, "Annotate").add_annotation_layer()
    annotations.data[:] = sample.strokes  # "painting"
    truth = viewer.add_labels(sample.truth, name="ground truth")

    train = open_dock(viewer, "Train")
    train._image.value = [image]
    train._labels_layer.value = annotations
    train._width.value = 8
    train._patch.value = 64
    train._batch.value = 8
    train._steps.value = 60
    train._run_dir.value = str(tmp_path / "run")
    assert train.start() is not None
    wait_for(qtbot, train)
    assert (tmp_path / "run" / "model.pt").exists()
    assert train._progress.value == 60 and train.loss_plot.series["train"][0][-1] == 60
    assert "preview" in [layer.metadata.get("unetseg") for layer in viewer.layers]

    predict = open_dock(viewer, "Predict")
    assert "step 60" in predict._model_info.value
    predict._images.value = [image]
    predict._scope.value = "stack"
    assert predict.predict() is not None
    wait_for(qtbot, predict)
    prediction = viewer.layers["cells prediction"]
    assert prediction.data.shape == sample.truth.shape
    assert set(np.unique(prediction.data)) <= {1, 2}

    evaluate = open_dock(viewer, "Evaluate")
    evaluate._prediction.value = prediction
    evaluate._truth.value = truth
    assert evaluate.evaluate() is not None
    wait_for(qtbot, evaluate)
    result = evaluate.result
    nucleus_fraction = (sample.truth == 2).mean()
    chance = 2 * nucleus_fraction / (1 + 2 * nucleus_fraction)  # Dice of predicting "nucleus" at random
    assert result.per_class[2]["dice"] > max(0.6, chance + 0.2)
    assert evaluate.table.columnCount() == 3 and evaluate.table.rowCount() == 7  # classes + mean; metrics
    errors = viewer.layers["error map"].data
    assert errors.shape == sample.truth.shape and set(np.unique(errors)) <= {0, 1, 2, 3}
    csv = evaluate.export_csv(tmp_path / "scores.csv")
    assert csv is not None and "mean" in csv.read_text()


def test_predict_slice_in_view_and_add_to_annotations(make_napari_viewer, qtbot, tmp_path):
    sample = make_sample(n_slices=3, size=64, painted_slices=2, seed=4)
    model_path = tiny_model_file(tmp_path / "model.pt", sample, steps=3)
    viewer = make_napari_viewer()
    image = viewer.add_image(sample.image, name="cells")
    annotations = viewer.add_labels(sample.strokes.copy(), name="annotations")
    predict = predict_dock_with_file(viewer, model_path)
    predict._images.value = [image]
    predict._scope.value = "slice"
    viewer.dims.set_current_step(0, 1)
    predict.predict()
    wait_for(qtbot, predict)
    layer = viewer.layers["cells prediction"]
    assert layer.data[1].any() and not layer.data[0].any() and not layer.data[2].any()

    before = annotations.data.copy()
    predict._annotations.value = annotations
    added = predict.add_to_annotations()
    painted = before[1] > 0
    assert added == int((~painted).sum())
    assert np.array_equal(annotations.data[1][painted], before[1][painted])  # strokes kept
    assert np.array_equal(annotations.data[1][~painted], layer.data[1][~painted])
    assert np.array_equal(annotations.data[[0, 2]], before[[0, 2]])


def test_predict_refuses_a_model_with_other_channels(make_napari_viewer, tmp_path, warnings_shown):
    sample = make_sample(n_slices=2, size=48, painted_slices=2, seed=5)
    model_path = tiny_model_file(tmp_path / "rgb.pt", sample, channels=3)
    viewer = make_napari_viewer()
    viewer.add_image(sample.image, name="grey")
    predict = predict_dock_with_file(viewer, model_path)
    assert predict.predict() is None
    assert "1 channel(s) but the model expects 3" in warnings_shown[-1]
    assert [layer.name for layer in viewer.layers] == ["grey"]


def test_stop_then_resume_continues_the_run(make_napari_viewer, qtbot, tmp_path):
    from napari_unetseg.core.checkpoint import load_model

    viewer = make_napari_viewer()
    sample = make_sample(n_slices=3, size=64, painted_slices=3, seed=6)
    image = viewer.add_image(sample.image, name="cells")
    strokes = viewer.add_labels(sample.strokes, name="strokes")
    viewer.dims.set_current_step(0, 2)
    train = open_dock(viewer, "Train")
    train._image.value = [image]
    train._labels_layer.value = strokes
    train._width.value, train._depth.value, train._patch.value, train._batch.value = 8, 2, 32, 2
    train._steps.value = 400
    train._run_dir.value = str(tmp_path / "run")
    train.start()
    qtbot.waitUntil(lambda: train._progress.value >= 3, timeout=60_000)
    train.stop()
    wait_for(qtbot, train)
    stopped_at = load_model(tmp_path / "run" / "model.pt").step
    assert 3 <= stopped_at < 400 and train._result.stopped
    assert train._resume.enabled and train._start.enabled and not train._stop.enabled
    preview = viewer.layers["training preview"].data
    assert preview[2].any() and not preview[0].any()  # the slice in view

    train._steps.value = stopped_at + 5
    train.start(resume=True)
    wait_for(qtbot, train)
    assert load_model(tmp_path / "run" / "model.pt").step == stopped_at + 5
    assert train.loss_plot.series["train"][0][-1] == stopped_at + 5

    copy = train.save_model_to(tmp_path / "copy.pt")
    assert copy is not None and load_model(copy).step == stopped_at + 5
    assert train.save_model_to(copy) is None  # an existing file is not replaced unasked


def test_train_refuses_a_single_class(make_napari_viewer, qtbot, warnings_shown):
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((2, 48, 48), np.float32), name="img")
    labels = np.zeros((2, 48, 48), np.uint8)
    labels[0, 10:20, 10:20] = 1
    layer = viewer.add_labels(labels, name="annotations")
    widget = open_dock(viewer, "Train")
    widget._labels_layer.value = layer
    widget.start()  # the data are checked in the worker: the answer comes as a notification
    wait_for(qtbot, widget)
    assert "only one class (1) is labelled" in warnings_shown[-1]
    assert np.array_equal(layer.data, labels) and len(viewer.layers) == 2
    assert widget._start.enabled


def test_a_failing_worker_notifies_and_a_new_run_can_start(make_napari_viewer, qtbot, monkeypatch, tmp_path):
    from napari_unetseg.core.training import Trainer
    from napari_unetseg.widgets import _run

    errors = []
    monkeypatch.setattr(_run, "show_error", errors.append)

    def broken_step(self):
        raise RuntimeError("simulated failure")

    monkeypatch.setattr(Trainer, "_train_step", broken_step)
    viewer = make_napari_viewer()
    sample = make_sample(n_slices=2, size=48, painted_slices=2, seed=7)
    image = viewer.add_image(sample.image, name="cells")
    strokes = viewer.add_labels(sample.strokes, name="strokes")
    train = open_dock(viewer, "Train")
    train._image.value, train._labels_layer.value = [image], strokes
    train._width.value, train._depth.value, train._patch.value, train._batch.value = 8, 2, 32, 2
    train._run_dir.value = str(tmp_path / "run")
    train.start()
    wait_for(qtbot, train)
    assert errors and "simulated failure" in errors[-1]
    assert train._start.enabled and not train._stop.enabled
    monkeypatch.undo()
    monkeypatch.setattr(_run, "show_error", errors.append)
    train._steps.value = 2
    train._run_dir.value = str(tmp_path / "run2")
    train.start()
    wait_for(qtbot, train)
    assert (tmp_path / "run2" / "model.pt").exists()


def test_predict_cancel_adds_no_layer(make_napari_viewer, qtbot, tmp_path):
    model_path = tiny_model_file(tmp_path / "model.pt", make_sample(n_slices=2, size=48, seed=8))
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((40, 300, 300), np.uint16), name="big")
    predict = predict_dock_with_file(viewer, model_path)
    predict._tile.value, predict._overlap.value = 64, 16
    predict.predict()
    predict.cancel()
    wait_for(qtbot, predict)
    assert [layer.name for layer in viewer.layers] == ["big"]
    assert "Cancelled" in predict._status.value and predict._run.enabled


def test_predict_refuses_a_file_that_is_not_a_model(make_napari_viewer, tmp_path, warnings_shown):
    bad = tmp_path / "notes.pt"
    bad.write_text("not a model")
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((32, 32), np.float32), name="img")
    predict = predict_dock_with_file(viewer, bad)
    assert predict.predict() is None
    assert "notes.pt" in warnings_shown[-1]
    assert [layer.name for layer in viewer.layers] == ["img"]


def test_layer_stacks_slices_and_channel_counts():
    from napari.layers import Image

    from napari_unetseg.widgets._layers import image_slice, image_stack, layer_channels

    rng = np.random.default_rng(0)
    grey = [Image(rng.random((2, 3, 16, 20)), name=f"c{i}") for i in range(2)]
    rgb = Image(rng.integers(0, 255, (3, 16, 20, 3), dtype=np.uint8), rgb=True)
    assert [layer_channels(layer) for layer in (*grey, rgb)] == [1, 1, 3]
    stack = image_stack(grey)
    assert stack.shape == (6, 2, 16, 20)
    assert np.array_equal(image_slice(grey, 4), stack[4])
    assert np.array_equal(image_slice([rgb], 2), np.moveaxis(rgb.data[2], -1, 0))


def test_predict_a_dask_layer_slice_by_slice(make_napari_viewer, qtbot, tmp_path):
    """A big file opened lazily (dask, one chunk per slice) predicts like the same data in
    memory, and no computation ever asks for more than one slice at a time."""
    import dask.array as da

    sample = make_sample(n_slices=4, size=64, painted_slices=2, seed=9)
    model_path = tiny_model_file(tmp_path / "model.pt", sample, steps=3)
    largest = []

    def read(block):
        largest.append(block.shape[0])
        return block

    lazy = da.from_array(sample.image, chunks=(1, 64, 64)).map_blocks(read, dtype=sample.image.dtype)
    viewer = make_napari_viewer()
    eager_layer = viewer.add_image(sample.image, name="eager")
    lazy_layer = viewer.add_image(lazy, name="lazy")
    predict = predict_dock_with_file(viewer, model_path)
    predict._probabilities.value = True
    for layer in (eager_layer, lazy_layer):
        predict._images.value = [layer]
        predict.predict()
        wait_for(qtbot, predict)
    eager, lazy_pred = viewer.layers["eager prediction"].data, viewer.layers["lazy prediction"].data
    assert eager.any() and np.array_equal(eager, lazy_pred)
    assert largest and max(largest) == 1
    probs = [viewer.layers[f"lazy p(class {v})"].data for v in (1, 2)]
    np.testing.assert_allclose(probs[0] + probs[1], 1.0, atol=1e-5)


def test_big_outputs_live_in_temporary_files_and_match_in_memory_ones(
    make_napari_viewer, qtbot, tmp_path, monkeypatch
):
    """Above MEMMAP_BYTES the prediction and probability layers are memory-mapped
    temporary files (not resident memory), with the same values as in memory."""
    from napari_unetseg.widgets import _outputs as predict_module

    sample = make_sample(n_slices=3, size=64, painted_slices=2, seed=5)
    model_path = tiny_model_file(tmp_path / "model.pt", sample, steps=3)
    viewer = make_napari_viewer()
    viewer.add_image(sample.image, name="small")
    viewer.add_image(sample.image.copy(), name="big")
    predict = predict_dock_with_file(viewer, model_path)
    predict._probabilities.value = True
    for name, limit in (("small", 1 << 30), ("big", 0)):
        monkeypatch.setattr(predict_module, "MEMMAP_BYTES", limit)
        predict._images.value = [viewer.layers[name]]
        predict.predict()
        wait_for(qtbot, predict)
    small, big = viewer.layers["small prediction"].data, viewer.layers["big prediction"].data
    assert not isinstance(small, np.memmap) and isinstance(big, np.memmap)
    assert big.any() and np.array_equal(small, big)
    for value in (1, 2):
        memory, mapped = (viewer.layers[f"{n} p(class {value})"].data for n in ("small", "big"))
        assert isinstance(mapped.base, np.memmap) or isinstance(mapped, np.memmap)
        np.testing.assert_array_equal(memory, mapped)


def test_train_dock_lists_every_architecture_with_its_size_and_trains_one(
    make_napari_viewer, qtbot, tmp_path
):
    from napari_unetseg.core.config import ModelSpec
    from napari_unetseg.core.models import MODELS, parameter_count

    viewer = make_napari_viewer()
    sample = make_sample(n_slices=2, size=64, painted_slices=2, seed=4)
    image = viewer.add_image(sample.image, name="cells")
    strokes = viewer.add_labels(sample.strokes, name="strokes")
    train = open_dock(viewer, "Train")
    train._width.value = 8
    combo = train._model.native
    labels = {combo.itemData(i): combo.itemText(i) for i in range(combo.count())}
    assert list(labels) == list(MODELS)
    fcn_size = parameter_count(ModelSpec(name="fcn8s", base_channels=8))
    assert labels["fcn8s"] == f"fcn8s  ({fcn_size / 1e6:.1f} M)"
    train._width.value = 16  # sizes follow the width; the chosen model stays
    train._model.value = "deeplabv3plus"
    train._width.value = 8
    viewer.add_image(sample.image, name="another layer")  # the docks refresh their choices
    labels = {combo.itemData(i): combo.itemText(i) for i in range(combo.count())}
    assert train._model.value == "deeplabv3plus" and labels["fcn8s"].endswith(f"({fcn_size / 1e6:.1f} M)")
    assert not train._depth.enabled  # DeepLab v3+ has a fixed output stride
    train._model.value = "unet3plus"
    assert train._depth.enabled and "UNet 3+" in train._model.tooltip

    train._model.value = "deeplabv3plus"
    train._patch.value, train._batch.value = 32, 2
    assert train_from_dock(qtbot, train, image, strokes, tmp_path / "run").spec.name == "deeplabv3plus"


def test_a_3d_model_trains_from_the_dock_with_the_layer_z_step(make_napari_viewer, qtbot, tmp_path):

    viewer = make_napari_viewer()
    sample = make_sample(n_slices=6, size=48, painted_slices=3, seed=2)
    image = viewer.add_image(sample.image, name="stack", scale=(2.0, 0.5, 0.5))  # z step 4x the pixel
    strokes = viewer.add_labels(sample.strokes, name="strokes", scale=(2.0, 0.5, 0.5))
    train = open_dock(viewer, "Train")
    train._model.value = "unet3d"
    train._width.value, train._depth.value, train._patch.value, train._batch.value = 8, 2, 32, 2
    loaded = train_from_dock(qtbot, train, image, strokes, tmp_path / "run")
    assert loaded.spec.name == "unet3d" and loaded.spec.anisotropy == 4.0
    assert loaded.model.pools[0] == (1, 2, 2)  # slices kept apart at the first level

    predict = open_dock(viewer, "Predict")
    predict._images.value = [image]
    predict._scope.value = "stack"
    assert predict.predict() is not None
    wait_for(qtbot, predict)
    assert viewer.layers["stack prediction"].data.shape == sample.truth.shape


def test_predict_from_a_pruned_unetplusplus_head(make_napari_viewer, qtbot, tmp_path):
    from napari_unetseg.core.checkpoint import load_model, pruned, save_model
    from napari_unetseg.core.config import ModelSpec, PredictConfig, TrainConfig
    from napari_unetseg.core.prediction import predict_stack
    from napari_unetseg.core.training import train

    sample = make_sample(n_slices=2, size=64, painted_slices=2, seed=5)
    spec = ModelSpec(name="unetplusplus", depth=3, base_channels=4)
    config = TrainConfig(steps=2, patch_size=32, batch_size=2)
    path = save_model(
        train([sample.image[:, None]], [sample.strokes], spec, config).loaded, tmp_path / "m.pt"
    )
    viewer = make_napari_viewer()
    image = viewer.add_image(sample.image, name="cells")
    predict = predict_dock_with_file(viewer, path)
    assert not predict._head.native.isHidden() and predict._head.choices == (0, 2, 1)
    predict._head.value = 1
    predict._images.value = [image]
    predict._scope.value = "stack"
    assert predict.predict() is not None
    wait_for(qtbot, predict)
    expected = predict_stack(pruned(load_model(path), 1), sample.image[:, None], PredictConfig()).labels
    np.testing.assert_array_equal(viewer.layers["cells prediction"].data, expected)
    predict._model_file.value = str(tiny_model_file(tmp_path / "unet.pt", sample))
    assert predict._head.native.isHidden() and predict._head.value == 0  # a U-Net has one head


def test_predict_with_an_ensemble_of_model_files(make_napari_viewer, qtbot, tmp_path, warnings_shown):
    from napari_unetseg.core.checkpoint import load_model
    from napari_unetseg.core.config import PredictConfig
    from napari_unetseg.core.prediction import predict_stack

    sample = make_sample(n_slices=2, size=64, painted_slices=2, seed=5)
    # without the class-prior correction, whose shift saturates these tiny models' outputs
    paths = [
        tiny_model_file(
            tmp_path / f"m{seed}.pt", sample, steps=3, seed=seed, advanced={"prior_correction": False}
        )
        for seed in (0, 1)
    ]
    viewer = make_napari_viewer()
    image = viewer.add_image(sample.image, name="cells")
    predict = predict_dock_with_file(viewer, paths[0])
    predict._model_file.value = paths  # several files chosen in the dialog
    assert predict._model_info.value.startswith("ensemble of 2 models")
    predict._images.value = [image]
    predict._probabilities.value = True
    assert predict.predict() is not None
    wait_for(qtbot, predict)
    members = [load_model(path) for path in paths]
    stack = sample.image[:, None]
    expected = predict_stack(members, stack, PredictConfig(), probabilities=True)
    single = predict_stack(members[0], stack, PredictConfig(), probabilities=True)
    np.testing.assert_array_equal(viewer.layers["cells prediction"].data, expected.labels)
    shown = viewer.layers["cells p(class 2)"].data  # (N, Y, X)
    np.testing.assert_allclose(shown, expected.probabilities[:, 1], atol=1e-6)
    assert np.abs(shown - single.probabilities[:, 1]).max() > 1e-3  # the second member counts

    strokes = sample.strokes.copy()
    strokes[strokes == 2] = 3  # another class numbering
    other_path = tiny_model_file(tmp_path / "other.pt", dataclasses.replace(sample, strokes=strokes))
    predict._model_file.value = [paths[0], other_path]
    assert "different classes" in predict._model_info.value
    assert predict.predict() is None
    assert "different classes" in warnings_shown[-1]
    assert len(viewer.layers) == 4  # the image, the prediction and its two probability layers


def test_learn_from_unpainted_pixels_reaches_the_run_and_only_for_sparse_labels(
    make_napari_viewer, qtbot, tmp_path
):
    from napari_unetseg.core.config import AdvancedOptions

    weight = AdvancedOptions().consistency_weight
    viewer = make_napari_viewer()
    sample = make_sample(n_slices=3, size=48, painted_slices=1, seed=5)
    image = viewer.add_image(sample.image, name="cells")
    strokes = viewer.add_labels(sample.strokes, name="strokes")
    train = open_dock(viewer, "Train")
    assert train._unpainted.enabled and not train._unpainted.value  # off by default
    train._unpainted.value = True
    train._mode.value = "dense"
    assert not train._unpainted.enabled and train._config().consistency_weight() == 0
    train._mode.value = "sparse"
    assert train._unpainted.enabled and train._config().consistency_weight() == weight

    train._width.value, train._depth.value, train._patch.value, train._batch.value = 8, 2, 32, 2
    loaded = train_from_dock(qtbot, train, image, strokes, tmp_path / "run")
    assert loaded.train_config["learn_unpainted"] and loaded.step == 3
    assert loaded.train_config["advanced"]["consistency_weight"] == weight


def test_the_seed_reaches_the_run_and_another_seed_gives_another_model(make_napari_viewer, qtbot, tmp_path):
    import torch

    viewer = make_napari_viewer()
    sample = make_sample(n_slices=2, size=48, painted_slices=1, seed=6)
    image = viewer.add_image(sample.image, name="cells")
    strokes = viewer.add_labels(sample.strokes, name="strokes")
    train = open_dock(viewer, "Train")
    train._width.value, train._depth.value, train._patch.value, train._batch.value = 8, 2, 32, 2
    assert train._seed.value == 0 and "ensemble" in train._seed.tooltip
    runs = {}
    for name, seed in [("first", 0), ("again", 0), ("other", 1)]:
        train._seed.value = seed
        runs[name] = train_from_dock(qtbot, train, image, strokes, tmp_path / name)
        assert runs[name].train_config["seed"] == seed

    def weights(loaded):
        return torch.cat([p.flatten() for p in loaded.model.state_dict().values() if p.is_floating_point()])

    assert torch.equal(weights(runs["first"]), weights(runs["again"]))  # seeded: reproducible on CPU
    assert not torch.allclose(weights(runs["first"]), weights(runs["other"]))


def test_tries_from_the_dock_draw_one_curve_per_seed_and_keep_the_lowest(
    make_napari_viewer, qtbot, tmp_path, warnings_shown
):
    import json

    viewer = make_napari_viewer()
    sample = make_sample(n_slices=4, size=48, painted_slices=4, seed=6)  # one slice held out
    image = viewer.add_image(sample.image, name="cells")
    strokes = viewer.add_labels(sample.strokes, name="strokes")
    train = open_dock(viewer, "Train")
    train._width.value, train._depth.value, train._patch.value, train._batch.value = 8, 2, 32, 2
    train._tries.value, train._seed.value = 2, 5
    loaded = train_from_dock(qtbot, train, image, strokes, tmp_path / "run", steps=8)
    record = json.loads((tmp_path / "run" / "config.json").read_text())["tries"]
    assert set(record["losses"]) == {"5", "6"} and loaded.train_config["seed"] == record["kept"]
    series = train.loss_plot.series
    assert list(series) == ["seed 5", "seed 6"]
    kept, dropped = f"seed {record['kept']}", f"seed {11 - record['kept']}"
    assert series[kept][0] == list(range(1, 9)) and series[dropped][0] == [1, 2]  # 2 steps a try
    dice = train.dice_plot.series  # validation every 2 steps; the dropped try stops before its first
    assert list(dice) == ["seed 5", "seed 6"] and dice[kept][0] == [2, 4, 6, 8] and dice[dropped][0] == []
    assert train._status.value.startswith("Finished at step 8")

    train._tries.value = 1  # a plain run has its single curve again
    train_from_dock(qtbot, train, image, strokes, tmp_path / "plain", steps=3)
    assert list(train.loss_plot.series) == ["train"] and len(train.loss_plot.series["train"][0]) == 3
    assert list(train.dice_plot.series) == ["mean"]

    train._tries.value, train._steps.value, train._run_dir.value = 2, 1, str(tmp_path / "none")
    assert (
        train.start() is None and "must be fewer steps than the run" in warnings_shown[-1]
    )  # a notification
    assert "('Steps')" in warnings_shown[-1] and "--" not in warnings_shown[-1]  # the dock's words
    assert warnings_shown[-1] == f"Training: {train._status.value}"  # and the status line says it too
    assert not (tmp_path / "none").exists() and train.worker is None

"""The docks and ``unetseg`` share their defaults, and the docks word the engine's errors
in their own terms: the docs/bad-input.md cases a dock can reach, in a real viewer."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_unetseg.core.sample import make_sample

pytestmark = pytest.mark.gui


def open_dock(viewer, name):
    _, widget = viewer.window.add_plugin_dock_widget("napari-unetseg", name)
    return widget


def wait_for(qtbot, widget, timeout=240_000):
    qtbot.waitUntil(lambda: widget.worker is None, timeout=timeout)


@pytest.fixture
def shown(monkeypatch):
    from napari_unetseg.widgets import _run

    messages = []
    monkeypatch.setattr(_run, "show_warning", messages.append)
    monkeypatch.setattr(_run, "show_error", messages.append)
    return messages


def test_the_train_dock_and_unetseg_train_start_from_the_same_configs(make_napari_viewer):
    from napari_unetseg.cli import build_parser, train_options
    from napari_unetseg.core.config import ModelSpec, TrainConfig
    from napari_unetseg.core.workflows import build_train_configs

    train = open_dock(make_napari_viewer(), "Train")
    args = build_parser().parse_args(["train", "--images", "a.tif", "--labels", "b.tif", "--out", "run"])
    spec, config = build_train_configs(*train_options(args))
    assert train._spec() == spec == ModelSpec()
    assert train._config() == config == TrainConfig()
    assert train._starting_model() is None and args.init is None  # random weights


SAMPLE = make_sample(n_slices=2, size=64, painted_slices=2, seed=9)


def _train_case(qtbot, viewer, train, image=SAMPLE.image, labels=SAMPLE.strokes, **controls):
    """Set the Train dock on these layers and controls, Start; the dock after its answer."""
    train._image.value = [viewer.add_image(image, name="image")]
    train._labels_layer.value = viewer.add_labels(labels, name="labels")
    train._width.value, train._depth.value, train._patch.value, train._batch.value = 8, 2, 32, 2
    train._steps.value = 2
    for name, value in controls.items():
        getattr(train, name).value = value
    if train.start() is not None:
        wait_for(qtbot, train)
    return train


def _existing_run(tmp_path):
    from napari_unetseg.core.config import ModelSpec, RunOptions, TrainConfig
    from napari_unetseg.core.training import train

    config = TrainConfig(steps=1, patch_size=32, batch_size=2)
    spec = ModelSpec(depth=2, base_channels=8)
    train([SAMPLE.image[:, None]], [SAMPLE.strokes], spec, config, RunOptions(run_dir=tmp_path / "run"))
    return tmp_path / "run"


TRAIN_CASES = {
    "labels with no painted pixel": (dict(labels=np.zeros_like(SAMPLE.strokes)), "no painted pixels", None),
    "one class only": (dict(labels=np.where(SAMPLE.strokes == 2, 0, SAMPLE.strokes)), "only one class", None),
    "NaN in the image": (dict(image=np.where(SAMPLE.image > 0.9, np.nan, SAMPLE.image)), "NaN", None),
    "constant image": (dict(image=np.full_like(SAMPLE.image, 7)), "is constant", None),
    "4x4 image (training)": (
        dict(image=np.arange(32, dtype=np.float32).reshape(2, 4, 4), labels=np.tile([1, 2], (2, 4, 2))),
        "too small",
        None,
    ),
    "patch larger than the image": (dict(_patch=128), "use a patch size of 64 or less", "('Patch size')"),
    "3D model on a single image": (
        dict(image=SAMPLE.image[0], labels=SAMPLE.strokes[0], _model="unet3d"),
        "segments z-stacks",
        "use a 2D model ('Model')",
    ),
}


@pytest.mark.parametrize("case", list(TRAIN_CASES))
def test_train_dock_words_bad_input_in_its_own_terms(case, make_napari_viewer, qtbot, shown, tmp_path):
    layers, expected, names = TRAIN_CASES[case]
    viewer = make_napari_viewer()
    train = open_dock(viewer, "Train")
    _train_case(qtbot, viewer, train, **layers, _run_dir=str(tmp_path / "run"))
    assert shown and expected in shown[-1], shown
    assert "--" not in shown[-1]  # no command-line flag in a dock
    if names is not None:
        assert names in shown[-1]
    heading, message = shown[-1].split(": ", 1)
    assert heading == "Training" and message in train._status.value  # the status line says it too
    assert not (tmp_path / "run" / "model.pt").exists()


def test_train_dock_run_folder_and_resume_messages(make_napari_viewer, qtbot, shown, tmp_path):
    run = _existing_run(tmp_path)
    viewer = make_napari_viewer()
    train = _train_case(qtbot, viewer, open_dock(viewer, "Train"), _run_dir=str(run))
    assert (
        "already holds a model: resume it ('Resume') or choose another run folder ('Run folder')" in shown[-1]
    )
    assert "--" not in shown[-1] and "overwrite" not in shown[-1]  # the dock has no such option

    train._run_dir.value = str(tmp_path / "new")
    train.start()
    wait_for(qtbot, train)
    labels = viewer.layers["labels"]
    labels.data = np.where(labels.data == 2, 3, labels.data)  # a class the run does not know
    train._steps.value = 4
    train.start(resume=True)
    wait_for(qtbot, train)
    assert "resume cannot add classes: fine-tune from its model file instead ('Start from')" in shown[-1]
    assert "--" not in shown[-1]


def test_predict_and_evaluate_docks_word_bad_input_in_their_own_terms(
    make_napari_viewer, qtbot, shown, tmp_path
):
    import torch

    run = _existing_run(tmp_path)
    model = run / "model.pt"
    truncated, newer, not_a_model = tmp_path / "truncated.pt", tmp_path / "newer.pt", tmp_path / "image.pt"
    truncated.write_bytes(model.read_bytes()[:2000])
    payload = torch.load(model, weights_only=True)
    torch.save({**payload, "format_version": 99}, newer)
    tifffile.imwrite(not_a_model, SAMPLE.image)
    viewer = make_napari_viewer()
    image = viewer.add_image(SAMPLE.image, name="image")
    tiny = viewer.add_image(np.arange(16, dtype=np.float32).reshape(4, 4), name="tiny")
    predict = open_dock(viewer, "Predict")
    predict._source.value = "file"
    for path, expected in ((truncated, "damaged or truncated"), (newer, "upgrade"), (not_a_model, "not a")):
        predict._model_file.value = str(path)
        assert expected in predict._model_info.value and "--" not in predict._model_info.value
        assert predict.predict() is None and expected in shown[-1] and "--" not in shown[-1]
    predict._model_file.value = str(model)
    predict._images.value = [tiny]
    predict.predict()
    wait_for(qtbot, predict)
    assert "tiny" not in [layer.name for layer in viewer.layers if "prediction" in layer.name]
    assert "too small" in shown[-1] and "--" not in shown[-1]
    assert shown[-1] == f"Prediction: {predict._status.value}"
    predict._images.value = [image]
    predict._tile.value, predict._overlap.value = 256, 256
    assert predict.predict() is None
    assert "leaves no step between 256-px tiles: make it smaller ('Overlap (px)')" in shown[-1]

    evaluate = open_dock(viewer, "Evaluate")
    evaluate._prediction.value = viewer.add_labels(np.zeros((2, 64, 64), np.uint8), name="empty prediction")
    evaluate._truth.value = viewer.add_labels(np.zeros((2, 64, 64), np.uint8), name="empty truth")
    evaluate._skip_zero.value = True
    evaluate.evaluate()
    wait_for(qtbot, evaluate)
    assert (
        "no classes left to evaluate" in shown[-1]
        and "ignore fewer values ('Ignore ground-truth 0 (unlabelled)')" in shown[-1]
    )
    assert "--" not in shown[-1] and evaluate.result is None

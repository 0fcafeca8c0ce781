"""The starter models shipped in the package: listed, loaded safely, useful before any
training, and fine-tuned from (CLI and Train dock) keeping their normalisation and classes."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import torch
from test_dock_messages import open_dock, shown, wait_for  # noqa: F401 (fixture)

from napari_unetseg.core.checkpoint import load_model
from napari_unetseg.core.config import ModelSpec, Normalization, PredictConfig, RunOptions, TrainConfig
from napari_unetseg.core.prediction import predict_stack
from napari_unetseg.core.sample import make_sample
from napari_unetseg.core.starters import available
from napari_unetseg.core.training import Trainer, train


def nucleus_dice(model, sample) -> float:
    found = predict_stack(model, sample.image[:, None], PredictConfig(device="cpu")).labels == 2
    truth = sample.truth == 2
    return float(2 * (found & truth).sum() / (found.sum() + truth.sum()))


def test_the_package_ships_small_starters_with_their_cards():
    starters = available()
    assert {"nuclei", "em-membranes", "nuclei-objects"} <= set(starters)
    assert sum(s.path.stat().st_size for s in starters.values()) <= 15 * 2**20
    for starter in starters.values():
        card = starter.card.read_text(encoding="utf-8")
        for section in ("## Data", "## Licence", "## Citation", "## Recipe", "## Scores"):
            assert section in card, (starter.name, section)
        assert "SCORES" not in card and starter.description.endswith(".")
        loaded = load_model(f"starter:{starter.name}")  # weights_only, as every model file
        assert loaded.label_mode == "dense" and loaded.spec.in_channels == 1
        assert all(p.dtype == torch.float32 for p in loaded.model.parameters())  # stored as fp16


def test_the_nuclei_starter_finds_nuclei_before_any_training():
    sample = make_sample(n_slices=1, size=256, seed=3)
    assert nucleus_dice(load_model("starter:nuclei"), sample) > 0.9
    assert nucleus_dice(load_model("starter:em-membranes"), sample) < 0.5  # starters differ


def test_unetseg_starters_lists_each_with_its_description(cli):
    proc = cli("starters")
    assert proc.returncode == 0, proc.stderr
    for starter in available().values():
        assert f"starter:{starter.name}" in proc.stdout and starter.description in proc.stdout


def test_fine_tuning_keeps_the_starter_normalisation_network_and_known_classes():
    sample = make_sample(n_slices=2, size=96, painted_slices=2, seed=4)
    base = load_model("starter:nuclei")
    other = ModelSpec(depth=2, base_channels=8, normalization=Normalization(low=0.0, high=100.0))
    init = RunOptions(init="starter:nuclei")
    config = TrainConfig(steps=1, patch_size=64, batch_size=2, device="cpu")
    names = ["background", "nucleus"]
    nuclei = Trainer([sample.image[:, None]], [sample.strokes], other, config, init, names)
    assert nuclei.spec == base.spec  # the user's network settings cannot break the starter
    state, known = nuclei.model.state_dict(), base.model.state_dict()
    head = [key for key in known if key.startswith("head.")]
    assert head and all(torch.equal(state[key], known[key]) for key in head)
    swapped = np.where(sample.strokes == 1, 2, np.where(sample.strokes == 2, 1, 0)).astype(np.uint8)
    renamed = Trainer([sample.image[:, None]], [swapped], other, config, init, ["nucleus", "background"])
    state = renamed.model.state_dict()
    assert all(torch.equal(state[key][0], known[key][1]) for key in head)  # found by name
    tuned = train([sample.image[:, None]], [sample.strokes], other, config, init, names)
    assert tuned.loaded.spec.normalization == base.spec.normalization
    assert tuned.loaded.class_names == ("background", "nucleus")


def test_unetseg_train_from_a_starter(cli, tmp_path):
    sample = make_sample(n_slices=2, size=96, painted_slices=2, seed=6)
    for name in ("image", "strokes"):
        tifffile.imwrite(tmp_path / f"{name}.tif", getattr(sample, name), metadata={"axes": "ZYX"})
    args = ["train", "--images", tmp_path / "image.tif", "--labels", tmp_path / "strokes.tif"]
    proc = cli(*args, "--out", tmp_path / "run", "--init", "starter:nuclei", "--class-names",
               "background,nucleus", "--steps", "4", "--patch-size", "64", "--device", "cpu")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    tuned = load_model(tmp_path / "run")
    assert tuned.spec == load_model("starter:nuclei").spec and nucleus_dice(tuned, sample) > 0.8


@pytest.mark.usefixtures("shown")
def test_the_train_dock_starts_from_a_starter_chosen_by_name(make_napari_viewer, qtbot, tmp_path):
    viewer = make_napari_viewer()
    sample = make_sample(n_slices=2, size=96, painted_slices=2, seed=7)
    train = open_dock(viewer, "Train")
    labels = [train._start_from.native.itemText(i) for i in range(train._start_from.native.count())]
    for starter in available().values():
        assert f"starter {starter.name}: {starter.description}" in labels
    train._start_from.value = "starter:nuclei"
    assert not train._init.visible  # the model file field is for "a model file..." only
    train._image.value = [viewer.add_image(sample.image, name="image")]
    train._labels_layer.value = viewer.add_labels(sample.strokes, name="strokes")
    train._run_dir.value = tmp_path / "run"
    train._patch.value, train._batch.value, train._steps.value = 64, 2, 3
    assert train.start() is not None
    wait_for(qtbot, train)
    tuned = load_model(tmp_path / "run")
    assert tuned.spec.normalization == load_model("starter:nuclei").spec.normalization


@pytest.mark.usefixtures("shown")
def test_the_predict_dock_predicts_with_a_starter_as_it_is(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    sample = make_sample(n_slices=1, size=256, seed=8)
    predict = open_dock(viewer, "Predict")
    names = [predict._source.native.itemText(i) for i in range(predict._source.native.count())]
    assert {f"starter {name}" for name in available()} <= set(names)
    predict._source.value = "starter:nuclei"
    assert not predict._model_file.visible and "background, 2 nucleus" in predict._model_info.value
    predict._images.value = [viewer.add_image(sample.image, name="cells")]
    assert predict.predict() is not None
    wait_for(qtbot, predict)
    found, truth = viewer.layers["cells prediction"].data == 2, sample.truth == 2
    assert 2 * (found & truth).sum() / (found.sum() + truth.sum()) > 0.9


def test_the_object_starter_gives_objects_and_fine_tunes_in_object_mode(cli, tmp_path):
    from skimage.measure import label

    from napari_unetseg.core.objects import evaluate_objects

    sample = make_sample(n_slices=2, size=128, painted_slices=0, seed=3)
    objects = np.stack([label(t == 2) for t in sample.truth]).astype(np.uint32)
    tifffile.imwrite(tmp_path / "image.tif", sample.image, metadata={"axes": "ZYX"})
    tifffile.imwrite(tmp_path / "objects.tif", objects, metadata={"axes": "ZYX"})
    starter = "starter:nuclei-objects"
    proc = cli("predict", "--model", starter, "--out", tmp_path / "out", tmp_path / "image.tif")
    assert proc.returncode == 0, proc.stderr
    found = tifffile.imread(next((tmp_path / "out").glob("*.tif")))
    assert found.dtype == np.uint32 and evaluate_objects(found, objects).total()["f1"] > 0.6
    base = load_model(starter)
    config = TrainConfig(steps=1, patch_size=64, batch_size=2, device="cpu", label_mode="dense", objects=True)
    trainer = Trainer([sample.image[:, None]], [objects], None, config, RunOptions(init=starter))
    state, known = trainer.model.state_dict(), base.model.state_dict()
    assert all(torch.equal(state[key], known[key]) for key in known if key.startswith("head."))
    painted = np.where(objects % 2 == 1, objects + 1, 0).astype(np.uint32)  # half the nuclei, whole
    painted[:, :8][objects[:, :8] == 0] = 1  # and a background stroke
    sparse = config.replace(label_mode="sparse")  # painted objects: their classes are numbered 1, 2, 3
    trainer = Trainer([sample.image[:, None]], [painted], None, sparse, RunOptions(init=starter))
    state = trainer.model.state_dict()
    assert trainer.class_names == base.class_names and trainer.class_values == (1, 2, 3)
    assert all(torch.equal(state[key], known[key]) for key in known if key.startswith("head."))

"""Start from a starter when one fits the labels (``init="auto"``: ``unetseg train --init
auto``, the Train dock's "Start from: auto"), else from random weights, saying which."""

from __future__ import annotations

import numpy as np
import tifffile
import torch
from test_dock_messages import open_dock, wait_for

from napari_unetseg.core.auto_start import NONE_APPLIES, best_starter
from napari_unetseg.core.checkpoint import load_model
from napari_unetseg.core.config import AUTO_START, AUTO_START_FIT, ModelSpec, RunOptions, TrainConfig
from napari_unetseg.core.events import StartEvent
from napari_unetseg.core.sample import make_sample
from napari_unetseg.core.training import Trainer, make_trainer
from napari_unetseg.core.tries import BestOfTries

CONFIG = TrainConfig(steps=2, patch_size=64, batch_size=2, device="cpu")
AUTO = RunOptions(init=AUTO_START)


def head_is(trainer: Trainer, name: str) -> bool:
    """Whether the trainer's head holds starter ``name``'s weights."""
    state, known = trainer.model.state_dict(), load_model(f"starter:{name}").model.state_dict()
    return all(torch.equal(state[k], known[k]) for k in known if k.startswith("head."))


def test_nuclei_strokes_start_from_the_nuclei_starter_and_say_so():
    sample = make_sample(n_slices=2, size=128, painted_slices=2, seed=4)
    image, strokes = sample.image[:, None], sample.strokes
    fit = best_starter([image], [strokes], ModelSpec(), CONFIG.replace(label_mode="sparse"))
    assert fit is not None and fit.name == "nuclei" and fit.fit >= AUTO_START_FIT and fit.fits
    trainer = Trainer([image], [strokes], None, CONFIG, AUTO, ["background", "nucleus"])
    assert trainer.started_from == str(fit.path) and head_is(trainer, "nuclei")
    assert trainer.config.learning_rate < CONFIG.learning_rate  # the fine-tuning recipe
    assert trainer.spec.normalization == load_model("starter:nuclei").spec.normalization
    first = next(trainer.run())
    assert isinstance(first, StartEvent) and "starter nuclei" in first.note
    # without names the classes are matched by label value: 1 background, 2 nucleus, as the starter's
    unnamed = Trainer([image], [strokes], None, CONFIG, AUTO)
    assert unnamed.started_from == str(fit.path)


def test_labels_no_starter_fits_start_from_random_weights():
    sample = make_sample(n_slices=2, size=128, painted_slices=2, seed=4)
    image, strokes = sample.image[:, None], sample.strokes
    swapped = np.where(strokes == 1, 2, np.where(strokes == 2, 1, 0)).astype(np.uint8)  # 1 = nucleus now
    trainer = Trainer([image], [swapped], None, CONFIG, AUTO)
    assert trainer.started_from is None and not head_is(trainer, "nuclei")
    assert trainer.config.learning_rate == CONFIG.learning_rate
    assert "random weights" in trainer.start_note and "best: " in trainer.start_note
    noise = np.random.default_rng(0).normal(size=image.shape).astype(np.float32)
    assert Trainer([noise], [strokes], None, CONFIG, AUTO).started_from is None


def test_only_starters_that_train_what_was_asked_for_are_judged():
    sample = make_sample(n_slices=2, size=128, painted_slices=2, seed=4)
    image, strokes = sample.image[:, None], sample.strokes
    sparse = CONFIG.replace(label_mode="sparse")
    three = strokes.copy()
    three[0, :3, :20] = 3  # a third class: no starter has three
    assert best_starter([image], [three], ModelSpec(), sparse) is None
    assert best_starter([image], [strokes], ModelSpec(name="unetplusplus"), sparse) is None
    assert best_starter([image], [strokes], ModelSpec(base_channels=32), sparse) is None
    assert best_starter([np.concatenate([image, image], 1)], [strokes], ModelSpec(), sparse) is None
    assert best_starter([image], [strokes], ModelSpec(), sparse.replace(objects=True)) is None
    trainer = Trainer([image], [three], None, CONFIG, AUTO)
    assert trainer.started_from is None and trainer.start_note == NONE_APPLIES
    explicit = Trainer([image], [strokes], None, CONFIG, RunOptions())  # no init: random weights, silent
    assert explicit.started_from is None and explicit.start_note == ""


def test_tries_report_what_they_start_from_and_judge_once(monkeypatch):
    import napari_unetseg.core.training as training

    calls = []
    judge = training.best_starter
    monkeypatch.setattr(training, "best_starter", lambda *a, **k: calls.append(1) or judge(*a, **k))
    sample = make_sample(n_slices=2, size=96, painted_slices=2, seed=4)
    tries = make_trainer([sample.image[:, None]], [sample.strokes], None, CONFIG.replace(tries=2), AUTO)
    assert isinstance(tries, BestOfTries) and "starter nuclei" in tries.start_note
    assert tries.started_from.endswith("nuclei.pt")
    second = tries._build(1)  # the next try starts from the starter the first one chose
    assert second.started_from == tries.started_from and head_is(second, "nuclei")
    assert len(calls) == 1 and second.start_note == ""


def test_unetseg_train_init_auto_starts_from_a_fitting_starter(cli, tmp_path):
    sample = make_sample(n_slices=2, size=96, painted_slices=2, seed=6)
    for name in ("image", "strokes"):
        tifffile.imwrite(tmp_path / f"{name}.tif", getattr(sample, name), metadata={"axes": "ZYX"})
    args = ["train", "--images", tmp_path / "image.tif", "--labels", tmp_path / "strokes.tif",
            "--steps", "2", "--patch-size", "64", "--device", "cpu"]  # fmt: skip
    proc = cli(*args, "--out", tmp_path / "auto", "--init", "auto")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("unetseg train: starting from starter nuclei: it already gives") == 1
    record = (tmp_path / "auto" / "config.json").read_text()
    assert "nuclei.pt" in record
    proc = cli(*args, "--out", tmp_path / "random")  # the default: random weights
    assert proc.returncode == 0 and "starting from" not in proc.stderr, proc.stderr
    assert '"started_from": null' in (tmp_path / "random" / "config.json").read_text()


def test_the_train_dock_on_auto_says_what_it_started_from(make_napari_viewer, qtbot, tmp_path, monkeypatch):
    viewer = make_napari_viewer()
    sample = make_sample(n_slices=2, size=96, painted_slices=2, seed=7)
    train = open_dock(viewer, "Train")
    assert train._start_from.value == ""  # random weights by default
    train._start_from.value = AUTO_START
    train._image.value = [viewer.add_image(sample.image, name="image")]
    train._labels_layer.value = viewer.add_labels(sample.strokes, name="strokes")
    train._run_dir.value = tmp_path / "run"
    train._patch.value, train._batch.value, train._steps.value = 64, 2, 3
    notes = []
    monkeypatch.setattr("napari_unetseg.widgets.train.show_info", notes.append)
    assert train.start() is not None
    wait_for(qtbot, train)
    assert any("Training: starting from starter nuclei" in note for note in notes), notes
    assert train._status.value.startswith("Finished at step 3 (from starter nuclei). Model:")
    tuned = load_model(tmp_path / "run")
    assert tuned.spec.normalization == load_model("starter:nuclei").spec.normalization

"""Real training on small synthetic data: events, sparse/dense, resume, fine-tune, seeds."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import blobs

from napari_unetseg.core.checkpoint import load_model, load_torch_safely
from napari_unetseg.core.config import ModelSpec, PredictConfig, RunOptions, TrainConfig
from napari_unetseg.core.data import encode_labels, find_class_values
from napari_unetseg.core.errors import UserInputError
from napari_unetseg.core.events import EpochEvent, LabelsEvent, PreviewEvent, StepEvent
from napari_unetseg.core.prediction import predict_stack
from napari_unetseg.core.sample import make_sample
from napari_unetseg.core.training import Trainer, train

SPEC = ModelSpec(depth=2, base_channels=8)


def cfg(**kw):
    base = dict(
        steps=20,
        patch_size=32,
        batch_size=4,
        steps_per_epoch=10,
        device="cpu",
        precision="fp32",
        learning_rate=5e-3,
    )
    base.update(kw)
    return TrainConfig(**base)


def test_label_encoding_sparse_and_dense():
    labels = np.array([[0, 1, 2], [2, 0, 5]])
    assert find_class_values([labels], "sparse") == (1, 2, 5)
    assert find_class_values([labels], "dense") == (0, 1, 2, 5)
    enc = encode_labels(labels, (1, 2, 5), "sparse")
    assert enc.tolist() == [[-1, 0, 1], [1, -1, 2]]
    with pytest.raises(UserInputError, match="no painted"):
        find_class_values([np.zeros((4, 4), int)], "sparse")
    with pytest.raises(UserInputError, match="only one class"):
        find_class_values([np.array([[0, 1]])], "sparse")
    with pytest.raises(UserInputError, match="integers"):
        find_class_values([np.array([[0.5, 1.0]])], "sparse")


def test_events_loss_decreases_and_model_file_every_epoch(tmp_path):
    image, labels = blobs(n=2, size=64)
    events = []
    result = train(
        [image],
        [labels],
        SPEC,
        cfg(steps=60, steps_per_epoch=20, label_mode="dense"),
        RunOptions(run_dir=tmp_path / "run"),
        on_event=events.append,
    )
    steps = [e for e in events if isinstance(e, StepEvent)]
    epochs = [e for e in events if isinstance(e, EpochEvent)]
    assert [e.step for e in steps] == list(range(1, 61))
    assert [e.epoch for e in epochs] == [1, 2, 3]
    assert np.mean([e.loss for e in steps[-10:]]) < 0.7 * np.mean([e.loss for e in steps[:10]])
    for name in ("model.pt", "resume.pt", "config.json", "history.csv", "history.json"):
        assert (tmp_path / "run" / name).is_file()
    loaded = load_model(tmp_path / "run" / "model.pt")
    assert loaded.class_values == (1, 2) and loaded.step == 60 and len(loaded.history) == 3
    assert result.loaded.step == 60 and not result.stopped


def test_sparse_training_ignores_unpainted_and_predicts_in_annotation_numbering(small_sample):
    image = small_sample.image[:, None].astype(np.float32)
    strokes = small_sample.strokes
    result = train(
        [image], [strokes], ModelSpec(depth=3, base_channels=8), cfg(steps=80, patch_size=64, batch_size=8)
    )
    assert result.loaded.class_values == (1, 2)
    pred = predict_stack(result.loaded, image).labels
    assert set(np.unique(pred)) <= {1, 2}
    truth = small_sample.truth
    fg = 2 * np.sum((pred == 2) & (truth == 2)) / (np.sum(pred == 2) + np.sum(truth == 2))
    assert fg > 0.5, fg  # well above chance from strokes on ~1% of the pixels


def test_training_with_deformation_learns():
    image, labels = blobs(n=2, size=64)
    events = []
    config = cfg(steps=80, steps_per_epoch=40, advanced={"deform": True}, label_mode="dense")
    result = train([image], [labels], SPEC, config, on_event=events.append)
    losses = [e.loss for e in events if isinstance(e, StepEvent)]
    assert np.mean(losses[-10:]) < 0.7 * np.mean(losses[:10])
    pred = predict_stack(result.loaded, image).labels
    assert (pred == labels).mean() > 0.9


def test_training_with_transform_consistency_learns_from_strokes():
    image, labels = blobs(n=2, size=64)
    strokes = np.zeros_like(labels)
    strokes[:, ::8] = labels[:, ::8]  # every 8th row painted (1 = background, 2 = blob)
    config = cfg(steps=80, steps_per_epoch=40, learn_unpainted=True, advanced={"consistency_weight": 3.0})
    assert (
        config.consistency_weight() == 3.0 and config.advanced.consistency_zoom == 2.0
    )  # zoomed by up to 2x
    result = train([image], [strokes], SPEC, config)
    pred = predict_stack(result.loaded, image).labels
    assert (pred == labels).mean() > 0.9
    with pytest.raises(UserInputError, match="consistency_zoom must be"):
        cfg(advanced={"consistency_zoom": 0.5})


def test_seeded_runs_are_reproducible_on_cpu():
    image, labels = blobs()
    a = train([image], [labels], SPEC, cfg(seed=3)).loaded.model.state_dict()
    b = train([image], [labels], SPEC, cfg(seed=3)).loaded.model.state_dict()
    c = train([image], [labels], SPEC, cfg(seed=4)).loaded.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_stop_then_resume_continues_optimizer_and_steps(tmp_path):
    image, labels = blobs()
    run = tmp_path / "run"
    trainer = Trainer([image], [labels], SPEC, cfg(steps=30), RunOptions(run_dir=run))
    gen = trainer.run()
    for event in gen:
        if isinstance(event, StepEvent) and event.step == 13:
            trainer.request_stop()
    assert load_model(run / "model.pt").step == 13  # saved on stop
    state = load_torch_safely(run / "resume.pt")
    assert state["step"] == 13 and state["optimizer"]["state"]
    resumed = Trainer([image], [labels], SPEC, cfg(steps=30), RunOptions(run_dir=run, resume=True))
    assert resumed.step == 13
    assert resumed.optimizer.state_dict()["state"][0]["step"] == state["optimizer"]["state"][0]["step"]
    steps = [e.step for e in resumed.run() if isinstance(e, StepEvent)]
    assert steps[0] == 14 and steps[-1] == 30


def test_resume_matches_uninterrupted_run(tmp_path):
    image, labels = blobs()
    straight = train([image], [labels], SPEC, cfg(steps=20), RunOptions(run_dir=tmp_path / "a")).loaded
    trainer = Trainer([image], [labels], SPEC, cfg(steps=20), RunOptions(run_dir=tmp_path / "b"))
    for event in trainer.run():
        if isinstance(event, StepEvent) and event.step == 10:
            trainer.request_stop()
    resumed = train(
        [image], [labels], SPEC, cfg(steps=20), RunOptions(run_dir=tmp_path / "b", resume=True)
    ).loaded
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-5) for k in a)


def test_finetune_new_head_when_classes_differ(tmp_path):
    image, labels = blobs()
    train([image], [labels], SPEC, cfg(), RunOptions(run_dir=tmp_path / "base"))
    base = load_model(tmp_path / "base" / "model.pt")
    three = labels.copy()
    three[:, :4, :4] = 7
    tuned = train(
        [image], [three], SPEC, cfg(steps=5), RunOptions(init=tmp_path / "base" / "model.pt")
    ).loaded
    assert tuned.class_values == (1, 2, 7) and tuned.spec.num_classes == 3
    enc_key = next(k for k in base.model.state_dict() if k.startswith("encoders"))
    # encoder weights start from the base model (they move a little in 5 steps)
    delta = (tuned.model.state_dict()[enc_key] - base.model.state_dict()[enc_key]).abs().max()
    assert delta < 0.1


def test_a_fine_tuned_head_keeps_the_rows_of_the_classes_it_knows(tmp_path):
    """Starting from a model with named classes: a class of the same name keeps its row of
    the head (whatever its label value), a class of a new name starts afresh."""
    image, labels = blobs()
    train(
        [image],
        [labels],
        SPEC,
        cfg(steps=3),
        RunOptions(run_dir=tmp_path / "base"),
        class_names=["background", "spot"],
    )
    base = load_model(tmp_path / "base" / "model.pt").model.state_dict()
    head = [k for k in base if k.startswith("head.")]
    assert head
    init = RunOptions(init=tmp_path / "base" / "model.pt")
    swapped = np.where(labels == 1, 2, 1).astype(labels.dtype)  # the user numbers the classes the other way
    trainer = Trainer([image], [swapped], SPEC, cfg(steps=1), init, class_names=["spot", "background"])
    new = trainer.model.state_dict()
    for key in head:
        assert torch.equal(new[key][0], base[key][1]) and torch.equal(new[key][1], base[key][0])
    other = Trainer(
        [image], [swapped], SPEC, cfg(steps=1), init, class_names=["cell", "background"]
    ).model.state_dict()
    for key in head:
        assert torch.equal(other[key][1], base[key][0]) and not torch.equal(other[key][0], base[key][1])


def test_fine_tuning_a_dense_model_runs_gently_without_the_prior_correction(tmp_path):
    """A base trained on full masks (every starter) already knows its classes and how frequent
    they are: it is fine-tuned at a tenth of the learning rate, without correcting the
    strokes' class frequencies (both cost the starters Dice; docs/benchmarks.md)."""
    image, labels = blobs()
    strokes = labels.copy()
    strokes[:, ::2] = 0  # sparse: half the rows unpainted
    for mode in ("dense", "sparse"):
        train([image], [labels], SPEC, cfg(steps=2, label_mode=mode), RunOptions(run_dir=tmp_path / mode))
        init = RunOptions(init=tmp_path / mode / "model.pt")
        trainer = Trainer([image], [strokes], SPEC, cfg(steps=1, label_mode="sparse"), init)
        assert trainer.config.advanced.prior_correction is (mode == "sparse")
        assert (trainer.priors is None) is (mode == "dense")
        expected = 5e-4 if mode == "dense" else 5e-3
        assert trainer.config.learning_rate == pytest.approx(expected)
        assert trainer.optimizer.param_groups[0]["initial_lr"] == pytest.approx(expected)


def test_validation_on_held_out_slices():
    image, labels = blobs(n=5)
    events = []
    train(
        [image],
        [labels],
        SPEC,
        cfg(steps=10, steps_per_epoch=5, validation_fraction=0.2),
        on_event=events.append,
    )
    epochs = [e for e in events if isinstance(e, EpochEvent)]
    assert all(0 <= e.validation["val_dice_mean"] <= 1 for e in epochs)


def test_preview_events():
    image, labels = blobs()
    trainer = Trainer([image], [labels], SPEC, cfg(steps=10))
    trainer.preview_every = 5
    trainer.set_preview(0)
    previews = [e for e in trainer.run() if isinstance(e, PreviewEvent)]
    assert [p.step for p in previews] == [5, 10]
    assert previews[0].labels.shape == image.shape[2:]
    assert set(np.unique(previews[-1].labels)) <= {1, 2}


def test_time_based_previews_follow_the_requested_slice():
    image, labels = blobs(n=3)
    trainer = Trainer([image], [labels], SPEC, cfg(steps=4))
    trainer.preview_interval_s = 0.0  # as often as possible: after every step
    trainer.set_preview(2)
    previews = []
    for event in trainer.run():
        if isinstance(event, PreviewEvent):
            previews.append(event)
            trainer.set_preview(None if event.step == 2 else 1)
    # slice 2 first, then slice 1 as asked after step 1; None after step 2 stops them
    assert [(p.step, p.key) for p in previews] == [(1, 2), (2, 1)]
    assert previews[0].labels.shape == image.shape[2:]


def test_a_slice_gets_the_same_labels_alone_inside_its_stack_and_as_the_preview():
    """One normalisation policy: each slice from its own percentiles, in training, in the
    preview and in prediction, on a stack whose slices differ in brightness."""
    image, labels = blobs(n=4)
    image = (
        image * np.array([1.0, 0.3, 4.0, 12.0], np.float32)[:, None, None, None]
        + np.array([0, 50, 0, 400], np.float32)[:, None, None, None]
    )  # dim, bright and offset slices side by side
    trainer = Trainer([image], [labels], SPEC, cfg(steps=30, precision="fp32"))
    trainer.preview_interval_s = 0.0
    trainer.set_preview(3)
    previews = [e for e in trainer.run() if isinstance(e, PreviewEvent)]
    last = previews[-1]
    assert last.step == 30 and last.key == 3
    loaded = trainer.loaded()
    config = PredictConfig(precision="fp32")
    whole = predict_stack(loaded, image, config)
    alone = predict_stack(loaded, image[3:4], config)
    chosen = predict_stack(loaded, image, config, slices=[3])
    assert len(np.unique(whole.labels[3])) == 2  # not a trivial answer
    assert np.mean(last.labels == whole.labels[3]) >= 0.999
    assert np.array_equal(alone.labels[0], whole.labels[3])
    assert np.array_equal(chosen.labels[0], whole.labels[3])
    with pytest.raises(UserInputError, match="out of range"):
        predict_stack(loaded, image, slices=[4])


def test_strokes_painted_while_training_join_the_run():
    """update_labels: the running trainer takes the new strokes at the next step, keeps
    its weights, and learns the newly painted region (a class it knew, elsewhere)."""
    image, labels = blobs(n=2)
    first = labels.copy()
    first[1] = 0  # only slice 0 painted at the start
    trainer = Trainer([image], [first], SPEC, cfg(steps=60, validation_fraction=0.0, precision="fp32"))
    events = trainer.run()
    for event in events:
        if isinstance(event, StepEvent) and event.step == 20:
            break
    weights = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    painted = labels.copy()
    painted[0, 0, 0] = 7  # a class the run does not know: ignored, and said so
    trainer.update_labels([painted])
    update = next(e for e in events if not isinstance(e, EpochEvent))  # the epoch of step 20 first
    assert isinstance(update, LabelsEvent) and update.accepted and update.step == 20
    assert len(trainer.sampler.images) == 2  # slice 1 is now drawn from
    assert update.slices == 2 and update.unknown == (7,)
    assert update.painted == int((labels > 0).sum()) - 1  # the pixel of class 7 is left out
    assert all(torch.equal(weights[k], v) for k, v in trainer.model.state_dict().items())  # kept
    for _ in events:
        pass
    assert trainer.step == 60
    # erasing everything keeps the previous strokes
    trainer.config = trainer.config.replace(steps=62)
    trainer.update_labels([np.zeros_like(labels)])
    refused = next(e for e in trainer.run() if isinstance(e, LabelsEvent))
    assert not refused.accepted and "no painted pixels" in refused.reason


def test_class_names_reach_the_model_file(tmp_path):
    from napari_unetseg.core.checkpoint import load_model

    image, labels = blobs()
    train([image], [labels], SPEC, cfg(steps=2), RunOptions(run_dir=tmp_path), class_names=["back", "blob"])
    loaded = load_model(tmp_path / "model.pt")
    assert loaded.class_names == ("back", "blob") and loaded.name_of(2) == "blob"
    # fine-tuning keeps the names it is not given
    result = train([image], [labels], SPEC, cfg(steps=2), RunOptions(init=tmp_path / "model.pt"))
    assert result.loaded.class_names == ("back", "blob")
    with pytest.raises(UserInputError, match="3 class names for 2 classes"):
        Trainer([image], [labels], SPEC, cfg(), class_names=["a", "b", "c"])
    with pytest.raises(UserInputError, match="out of range"):
        predict_stack(result.loaded, image, slices=[3])


def test_refuses_existing_run_and_bad_pairs(tmp_path):
    image, labels = blobs()
    train([image], [labels], SPEC, cfg(steps=2), RunOptions(run_dir=tmp_path))
    with pytest.raises(UserInputError, match="already holds a model"):
        Trainer([image], [labels], SPEC, cfg(), RunOptions(run_dir=tmp_path))
    with pytest.raises(UserInputError, match="does not match"):
        Trainer([image], [labels[:, :10]], SPEC, cfg())
    with pytest.raises(UserInputError, match="no painted"):
        Trainer([image], [np.zeros_like(labels)], SPEC, cfg())


def test_unetplusplus_deep_supervision_trains():
    image, labels = blobs()
    spec = ModelSpec(name="unetplusplus", depth=2, base_channels=8)
    loaded = train([image], [labels], spec, cfg(steps=10)).loaded
    assert loaded.spec.deep_supervision and len(loaded.model.heads) == 2


def test_a_step_with_nan_gradients_is_skipped_not_learnt(small_sample, monkeypatch):
    """One step whose gradients are NaN (oneDNN's bf16 conv3d gave such steps at random on
    CPU) used to turn every weight NaN: the model then predicted nothing. Now the step is
    skipped; a run whose every step is NaN is refused in the user's words."""
    import napari_unetseg.core.training as training

    real, calls = training.training_loss, []

    def nan_at_step_3(*args, **kwargs):
        calls.append(1)
        loss = real(*args, **kwargs)
        return loss * float("nan") if len(calls) == 3 else loss

    monkeypatch.setattr(training, "training_loss", nan_at_step_3)
    image, labels = small_sample.image[:, None], small_sample.strokes
    spec = ModelSpec(depth=3, base_channels=8)  # as the sparse-training test above, which reaches 0.5
    result = train([image], [labels], spec, cfg(steps=80, patch_size=64, batch_size=8))
    weights = list(result.loaded.model.parameters())
    assert len(calls) == 80 and all(torch.isfinite(p).all() for p in weights)
    pred, truth = predict_stack(result.loaded, image, PredictConfig(device="cpu")).labels, small_sample.truth
    assert 2 * np.sum((pred == 2) & (truth == 2)) / (np.sum(pred == 2) + np.sum(truth == 2)) > 0.5

    monkeypatch.setattr(training, "training_loss", lambda *a, **k: real(*a, **k) * float("nan"))
    with pytest.raises(UserInputError, match="training diverged: 20 steps in a row"):
        train([image], [labels], SPEC, cfg(steps=30))


def test_a_3d_network_trains_on_cpu_without_non_finite_steps(monkeypatch):
    """A 3D U-Net with 4-channel layers got NaN gradients from oneDNN's bf16 conv3d at every
    step on CPUs with bf16 units (the run was refused as diverged); 3D training on CPU is
    fp32 now (``precision="auto"``). Where the CPU has no bf16 units it was fp32 before too."""
    import napari_unetseg.core.training as training

    real, skipped = training.Trainer._finite_gradients, []

    def counted(trainer):
        finite = real(trainer)
        skipped.extend([] if finite else [trainer.step])
        return finite

    monkeypatch.setattr(training.Trainer, "_finite_gradients", counted)
    sample = make_sample(n_slices=12, size=64, painted_slices=12, seed=4)
    spec = ModelSpec("unet3d", depth=2, base_channels=4)
    config = cfg(steps=30, patch_size=32, patch_depth=8, batch_size=2, precision="auto")
    result = train([sample.image[:, None]], [sample.strokes], spec, config)
    assert skipped == [] and all(torch.isfinite(p).all() for p in result.loaded.model.parameters())

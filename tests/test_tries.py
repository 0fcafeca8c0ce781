"""Best of several tries (``TrainConfig.tries``): real training on small synthetic data."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import blobs

from napari_unetseg.core.checkpoint import load_model
from napari_unetseg.core.config import ModelSpec, RunOptions, TrainConfig
from napari_unetseg.core.errors import UserInputError
from napari_unetseg.core.events import ChoiceEvent, StepEvent, TryEvent
from napari_unetseg.core.training import BestOfTries, Trainer, make_trainer, train

SPEC = ModelSpec(depth=2, base_channels=8)


def cfg(try_steps=None, **kw):
    options = dict(steps=16, patch_size=32, batch_size=4, steps_per_epoch=4, device="cpu", precision="fp32")
    options.update(kw)
    return TrainConfig(**options, advanced={"try_steps": try_steps})


def solo_run(image, labels, seed):
    """The run of one seed alone: its model and every step's loss."""
    trainer = Trainer([image], [labels], SPEC, cfg(seed=seed))
    losses = [e.loss for e in trainer.run() if isinstance(e, StepEvent)]
    return trainer.loaded(), losses


def test_the_kept_try_is_the_lowest_loss_seed_and_exactly_its_run_alone(tmp_path):
    image, labels = blobs(seed=3)
    events = []
    run = tmp_path / "run"
    result = train(
        [image], [labels], SPEC, cfg(tries=3, try_steps=6), RunOptions(run_dir=run), on_event=events.append
    )

    tries = [e for e in events if isinstance(e, TryEvent)]
    assert [(t.index, t.tries, t.seed, t.steps) for t in tries] == [(1, 3, 0, 6), (2, 3, 1, 6), (3, 3, 2, 6)]
    (choice,) = [e for e in events if isinstance(e, ChoiceEvent)]
    solo = {seed: solo_run(image, labels, seed) for seed in (0, 1, 2)}
    for seed, (_, losses) in solo.items():  # each try's loss over steps 4-6 is its solo run's
        assert choice.losses[seed] == pytest.approx(np.mean(losses[3:6]), abs=1e-6)
    assert (choice.first, choice.last) == (4, 6)
    assert choice.seed == min(choice.losses, key=choice.losses.get)
    after = [e for e in events[events.index(choice) :] if isinstance(e, StepEvent)]
    assert [e.step for e in after] == list(range(7, 17))  # the kept try goes on where it stopped
    # what is left of the job: the rest of the run, plus the tries still to come
    remaining = [e.remaining for e in events if isinstance(e, StepEvent)]
    assert remaining[:7] == [15 + 12, 14 + 12, 13 + 12, 12 + 12, 11 + 12, 10 + 12, 15 + 6]
    assert [e.remaining for e in after] == list(range(9, -1, -1))

    kept, _ = solo[choice.seed]
    a, b = result.loaded.model.state_dict(), kept.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    saved = load_model(run / "model.pt")
    assert saved.step == 16 and saved.train_config["seed"] == choice.seed and saved.train_config["tries"] == 1
    record = json.loads((run / "config.json").read_text())
    assert record["tries"]["kept"] == choice.seed and set(record["tries"]["losses"]) == {"0", "1", "2"}
    assert [row["step"] for row in json.loads((run / "history.json").read_text())] == [4, 8, 12, 16]


def test_stopping_during_the_tries_keeps_the_running_try_and_it_resumes_with_its_seed(tmp_path):
    image, labels = blobs(seed=3)
    run = tmp_path / "run"
    trainer = make_trainer([image], [labels], SPEC, cfg(tries=3, try_steps=6), RunOptions(run_dir=run))
    assert isinstance(trainer, BestOfTries)
    current = None
    for event in trainer.run():
        if isinstance(event, TryEvent):
            current = event.seed
        if current == 1 and isinstance(event, StepEvent) and event.step == 3:
            trainer.request_stop()
    saved = load_model(run / "model.pt")
    assert saved.step == 3 and saved.train_config["seed"] == 1
    assert json.loads((run / "config.json").read_text())["tries"]["stopped_during_try"] == 2

    resumed = make_trainer([image], [labels], SPEC, cfg(tries=3, try_steps=6), RunOptions(run, resume=True))
    assert isinstance(resumed, Trainer) and resumed.config.seed == 1  # the run's seed, not the asked one
    result_steps = [e.step for e in resumed.run() if isinstance(e, StepEvent)]
    assert result_steps[0] == 4 and result_steps[-1] == 16


def test_a_run_folder_holding_a_model_is_refused_before_any_try(tmp_path):
    image, labels = blobs()
    run = tmp_path / "run"
    train([image], [labels], SPEC, cfg(steps=2), RunOptions(run_dir=run))
    with pytest.raises(UserInputError, match="already holds a model"):
        make_trainer([image], [labels], SPEC, cfg(tries=2), RunOptions(run_dir=run))


@pytest.mark.parametrize(
    "options,message",
    [
        ({"tries": 0}, "tries must be a whole number"),
        ({"tries": 1.5}, "tries must be a whole number"),
        ({"tries": 2, "steps": 4, "try_steps": 4}, "must be fewer steps than the run"),
        ({"tries": 2, "steps": 1}, "must be fewer steps than the run"),
        ({"try_steps": 0}, "try_steps must be"),
    ],
)
def test_bad_tries_settings_are_refused(options, message):
    with pytest.raises(UserInputError, match=message):
        cfg(**options)

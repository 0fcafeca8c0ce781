"""Several starts of one run (``TrainConfig.tries``); the one that fits best goes on.

Runs on a few strokes can fail with one seed and work with another, and the failed ones
fit the strokes worse from early on (docs/benchmarks.md, "Tries"): so start a few seeds
for a short while each, keep the lowest training loss, and train that one to the end.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Generator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from napari_unetseg.core.config import TrainConfig
from napari_unetseg.core.events import ChoiceEvent, StepEvent, TrainResult, TryEvent
from napari_unetseg.core.run_folder import RunFolder

if TYPE_CHECKING:
    from napari_unetseg.core.training import Trainer


class BestOfTries:
    """Try ``k`` is the run with seed ``config.seed + k``, built by ``build(k)``.

    Each try runs ``config.first_steps()`` steps, one after the other, and waits; the
    try with the lowest mean training loss over the second half of those steps (no
    validation labels needed) then trains to ``config.steps`` and is the only one saved
    to ``run_dir``. A kept try is exactly the run of its seed alone: each try owns its
    sampler, and the global torch random state is put back when it goes on. Two tries
    are held in memory at most.

    Same interface as :class:`~napari_unetseg.core.training.Trainer` (``run``,
    ``request_stop``, ``set_preview``, ``update_labels``, ``preview_interval_s``); the events gain a
    :class:`TryEvent` before each try and a :class:`ChoiceEvent` when one is kept, and
    each :class:`StepEvent`'s ``remaining`` counts the tries still to come. Stopping
    during the tries keeps the try that is running (saved as a stopped run, which can
    be resumed).
    """

    def __init__(
        self,
        build: Callable[[int], Trainer],
        config: TrainConfig,
        run_dir: Path | None,
        overwrite: bool = False,
    ) -> None:
        self.config = config
        self.run_dir = run_dir
        if run_dir is not None and not overwrite:
            RunFolder(run_dir).check_new()
        self._build = build
        self._first: Trainer | None = build(0)  # bad input fails here, before anything runs
        self.warnings = self._first.warnings
        self.start_note = self._first.start_note  # init="auto": what every try starts from
        self.started_from = self._first.started_from
        self.class_values = self._first.class_values
        self.current: Trainer | None = None
        self.preview_interval_s: float | None = None
        self._preview: int | None = None
        self._labels: list[np.ndarray] | None = None  # the latest update_labels, for later tries
        self._stop_requested = False

    def request_stop(self) -> None:
        """Ask the running try (or the kept run) to save and stop after the current step."""
        self._stop_requested = True
        if self.current is not None:
            self.current.request_stop()

    def set_preview(self, index: int | None) -> None:
        """As :meth:`Trainer.set_preview`, for whichever try is running."""
        self._preview = index
        if self.current is not None:
            self.current.set_preview(index)

    def update_labels(self, labels) -> None:
        """As :meth:`Trainer.update_labels`, for the running try and every later one."""
        self._labels = list(labels)
        if self.current is not None:
            self.current.update_labels(self._labels)

    def _start(self, trainer: Trainer) -> Trainer:
        self.current = trainer
        trainer.preview_interval_s = self.preview_interval_s
        trainer.set_preview(self._preview)
        if self._labels is not None:
            trainer.update_labels(self._labels)
        if self._stop_requested:
            trainer.request_stop()
        return trainer

    def run(self) -> Generator:
        """Run the tries, then the kept one to the end; returns its :class:`TrainResult`."""
        cfg, steps = self.config, self.config.first_steps()
        first = steps // 2 + 1  # the loss over the second half of the tries picks the run
        best = None  # (loss, seed, trainer, events, torch random state)
        losses: dict[int, float] = {}
        for k in range(cfg.tries):
            if self._stop_requested and best is not None:
                break  # stopped between two tries: go on with the best so far, which stops
            seed = cfg.seed + k
            trainer = self._start(self._first if k == 0 else self._build(k))
            self._first = None
            yield TryEvent(k + 1, cfg.tries, seed, steps)
            events, step_losses = trainer.run(), []
            later = (cfg.tries - k - 1) * steps  # the steps of the tries still to come
            while len(step_losses) < steps:
                try:
                    event = next(events)
                except StopIteration as stop:  # stopped by the user: keep this try
                    trainer.tries_record = {"stopped_during_try": k + 1, "losses": losses}
                    if self.run_dir is not None:
                        trainer.adopt_run_dir(self.run_dir)
                    return TrainResult(stop.value.loaded, self.run_dir, stopped=True)
                if isinstance(event, StepEvent):
                    step_losses.append(event.loss)
                    event = dataclasses.replace(event, remaining=event.remaining + later)
                yield event
            losses[seed] = float(np.mean(step_losses[first - 1 :]))
            candidate = (losses[seed], seed, trainer, events, _random_state())
            if best is None or candidate[0] < best[0]:
                best, candidate = candidate, best
            if candidate is not None:  # the worse of the two is dropped, unsaved
                candidate[2].discard()
                candidate[3].close()
        _, seed, trainer, events, state = best
        _set_random_state(state)
        trainer.tries_record = {"losses": losses, "kept": seed, "steps": [first, steps]}
        self.current = trainer
        if self._stop_requested:
            trainer.request_stop()
        if self._labels is not None:  # strokes painted since this try paused
            trainer.update_labels(self._labels)
        yield ChoiceEvent(seed, dict(losses), first, steps)
        if self.run_dir is not None:
            trainer.adopt_run_dir(self.run_dir)
        return (yield from events)


def _random_state() -> tuple:
    """The global torch random state (CPU, and CUDA when there is one)."""
    return torch.get_rng_state(), torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None


def _set_random_state(state: tuple) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state_all(state[1])

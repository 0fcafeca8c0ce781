"""Events yielded by the long-running generators (training, prediction).

A GUI runs the generator in a worker thread and reacts to each event in the main
thread; the CLI turns them into progress bars.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from napari_unetseg.core.checkpoint import LoadedModel


@dataclass(frozen=True)
class StepEvent:
    """One optimisation step finished. ``remaining`` counts the steps still to run in the
    whole job: the rest of this run, plus the tries still to start (``TrainConfig.tries``)."""

    step: int
    total_steps: int
    loss: float
    learning_rate: float
    elapsed_s: float
    remaining: int = 0


@dataclass(frozen=True)
class EpochEvent:
    """An epoch (``steps_per_epoch`` steps) finished and the model file was written."""

    epoch: int
    step: int
    train_loss: float
    validation: dict[str, float] | None
    model_path: Path | None


@dataclass(frozen=True)
class PreviewEvent:
    """The current model's prediction of the preview image, in annotation numbering."""

    step: int
    labels: np.ndarray = field(repr=False)
    key: object = None


@dataclass(frozen=True)
class LabelsEvent:
    """The labels given to ``update_labels`` while the run goes on: from ``step`` on it
    trains on ``painted`` labelled pixels in ``slices`` slices (or volumes). ``unknown``:
    painted values of classes the run does not know (ignored). When ``accepted`` is false
    the previous labels go on, for ``reason``."""

    step: int
    painted: int = 0
    slices: int = 0
    unknown: tuple[int, ...] = ()
    accepted: bool = True
    reason: str = ""


@dataclass(frozen=True)
class StartEvent:
    """A run with ``init="auto"`` begins: ``note`` says what it starts from (a starter that
    fits the labels, or random weights) and why (core/auto_start.py)."""

    note: str


@dataclass(frozen=True)
class TryEvent:
    """One of several tries (``TrainConfig.tries``) starts: the events that follow, up to
    the next ``TryEvent`` or :class:`ChoiceEvent`, are its steps."""

    index: int
    tries: int
    seed: int
    steps: int


@dataclass(frozen=True)
class ChoiceEvent:
    """The tries are done: the run with ``seed`` goes on. ``losses`` maps every try's seed
    to its mean training loss over steps ``first``..``last``; the lowest was kept."""

    seed: int
    losses: dict[int, float]
    first: int
    last: int


@dataclass(frozen=True)
class FileEvent:
    """``unetseg predict``: input file ``index`` (of ``total``) is about to be predicted."""

    index: int
    total: int
    path: Path


@dataclass
class TrainResult:
    """What a finished (or stopped) training run returns."""

    loaded: LoadedModel
    run_dir: Path | None
    stopped: bool


@dataclass(frozen=True)
class PredictProgress:
    """Progress of a prediction: tiles of the current slice done out of its total."""

    done: int
    total: int
    slice_index: int
    n_slices: int = 1


@dataclass(frozen=True)
class ZoomEvent:
    """A slice of a 2D object model was predicted again, zoomed, because its objects lay
    outside the sizes the model learnt (``PredictConfig.match_size``,
    :mod:`~napari_unetseg.core.object_scale`): the slice's index in its stack of
    ``n_slices``, its objects' median largest depth (about their radius, pixels) ``size``,
    the learnt range ``low``-``high`` (middle ``middle``), and the ``zoom`` it was
    predicted at (of the image as it is: for a model that learnt zoomed,
    ``LoadedModel.object_zoom``, that zoom included); ``file``: the input's name, where
    the event does not follow its :class:`FileEvent` (block-wise runs,
    :mod:`~napari_unetseg.core.distributed`)."""

    slice_index: int
    n_slices: int
    zoom: float
    size: float
    low: float
    middle: float
    high: float
    file: str = ""

    def describe(self) -> str:
        """One line for the CLI and the Predict dock."""
        return (
            f"slice {self.slice_index + 1}/{self.n_slices}: objects of about {self.size:.1f} px radius, "
            f"the model learnt {self.low:.1f}-{self.high:.1f}: predicted again at {self.zoom:.2f}x"
        )


@dataclass(frozen=True)
class BlockProgress:
    """Progress of a block-wise prediction (:mod:`~napari_unetseg.core.distributed`): tasks
    finished (blocks predicted; for object models also objects found per slice and blocks
    of ids written) out of all of all inputs; ``resumed`` of them were finished by an
    earlier, interrupted run of the same command."""

    done: int
    total: int
    resumed: int = 0
    seconds: float = 0.0  # the task just finished: its time,
    peak_bytes: int = 0  # the peak memory (RSS) of the worker process that ran it so far,
    worker: int = 0  # and that process's id


def run_generator(gen: Generator, on_event: Callable | None = None):
    """Exhaust a generator, passing each yielded event to ``on_event``; return its value."""
    while True:
        try:
            event = next(gen)
        except StopIteration as stop:
            return stop.value
        if on_event is not None:
            on_event(event)

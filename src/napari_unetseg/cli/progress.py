"""Progress output of ``unetseg``: a bar over steps (or slices) and a line per epoch, on stderr."""

from __future__ import annotations

import sys

from napari_unetseg.core.events import (
    BlockProgress,
    ChoiceEvent,
    EpochEvent,
    FileEvent,
    PredictProgress,
    StartEvent,
    StepEvent,
    TryEvent,
    ZoomEvent,
)


def _bar(total: int | None = None, unit: str = "step"):
    from tqdm import tqdm

    return tqdm(total=total, unit=unit, file=sys.stderr, dynamic_ncols=True, leave=False, disable=None)


def train_printer():
    """An ``on_event`` callback: a progress bar over steps, a line per try and per epoch."""
    bar = None

    def on_event(event) -> None:
        nonlocal bar
        if isinstance(event, (TryEvent, ChoiceEvent)) and bar is not None:
            bar.close()
            bar = None
        if isinstance(event, StartEvent):  # init="auto": once, before the first try
            print(f"unetseg train: {event.note}", file=sys.stderr)
        elif isinstance(event, TryEvent):
            print(f"try {event.index}/{event.tries}: seed {event.seed}, {event.steps} steps", file=sys.stderr)
        elif isinstance(event, ChoiceEvent):
            losses = ", ".join(f"seed {seed}: {loss:.4f}" for seed, loss in event.losses.items())
            print(
                f"kept seed {event.seed} (mean loss over steps {event.first}-{event.last}: {losses})",
                file=sys.stderr,
            )
        elif isinstance(event, StepEvent):
            if bar is None:
                bar = _bar(event.total_steps)
                bar.update(event.step - 1)
            bar.update(1)
            bar.set_postfix(loss=f"{event.loss:.4f}")
        elif isinstance(event, EpochEvent):
            val = event.validation or {}
            extra = f"  val Dice {val['val_dice_mean']:.4f}" if "val_dice_mean" in val else ""
            message = f"epoch {event.epoch}  step {event.step}  loss {event.train_loss:.4f}{extra}"
            (bar.write if bar else print)(message, file=sys.stderr)
            if bar is not None and bar.n >= bar.total:
                bar.close()
                bar = None

    return on_event


def predict_printer():
    """An ``on_event`` callback: one progress bar of slices per input file (or one of
    blocks for a block-wise run, with a line when it finishes an interrupted one), and a
    line for each slice an object model predicted again at another scale."""
    state = {"bar": None, "name": ""}

    def on_event(event) -> None:
        if isinstance(event, BlockProgress):
            if state["bar"] is None:
                if event.resumed:
                    print(f"resuming: {event.resumed} of {event.total} tasks were done", file=sys.stderr)
                state["bar"] = _bar(event.total, unit="task")
            state["bar"].update(event.done - state["bar"].n)
        elif isinstance(event, FileEvent):
            if state["bar"] is not None:
                state["bar"].close()
            state["bar"], state["name"] = None, event.path.name
        elif isinstance(event, ZoomEvent):  # a slice of an object model predicted again, zoomed
            name = event.file or state["name"]  # block-wise runs name the file in the event
            line = f"{name}: {event.describe()}" if name else event.describe()
            (state["bar"].write if state["bar"] is not None else print)(line, file=sys.stderr)
        elif isinstance(event, PredictProgress):
            if state["bar"] is None:
                state["bar"] = _bar(event.n_slices, unit="slice")
                state["bar"].set_description(state["name"])
            state["bar"].set_postfix(tiles=f"{event.done}/{event.total}")
            if event.done == event.total:
                state["bar"].update(1)

    return on_event


def demo_printer():
    """Training events to :func:`train_printer`, prediction events to :func:`predict_printer`."""
    train, predict = train_printer(), predict_printer()

    def on_event(event) -> None:
        (predict if isinstance(event, (FileEvent, PredictProgress, ZoomEvent)) else train)(event)

    return on_event

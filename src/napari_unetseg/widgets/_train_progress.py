"""What the Train dock shows of a running job: the loss and validation-Dice curves (one
per try), the progress bar, and the status line with the time left (main thread)."""

from __future__ import annotations

from napari_unetseg.core.events import ChoiceEvent, EpochEvent, StepEvent, TryEvent
from napari_unetseg.widgets._plot import CurvePlot

LOSS_COLOURS = ("#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f")
MAX_TRIES = len(LOSS_COLOURS)  # a colour per try


def format_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"


class TrainProgress:
    """Turns training events into curves, the progress bar and the status text."""

    def __init__(self, progress, status) -> None:
        self.progress, self.status = progress, status
        self.loss_plot = CurvePlot("loss", empty_text="the loss curve starts with the training")
        self.dice_plot = CurvePlot(
            "validation Dice (held-out painted slices)",
            y_range=(0.0, 1.0),
            empty_text="appears when four or more slices are painted",
        )
        self.dice_plot.setVisible(False)  # shown once there is validation data
        self._plain_curves()
        self._loss_ema: float | None = None
        self._origin: tuple[int, float] | None = None  # (step, elapsed_s) of the first step seen
        self._rate: float | None = None  # seconds per step

    def start(self, new_run: bool) -> None:
        """A run starts (a resumed one goes on drawing on its curves)."""
        if new_run:
            self._plain_curves()
        self._loss_ema = self._origin = self._rate = None

    def show(self, event) -> None:
        if isinstance(event, StepEvent):
            self._on_step(event)
        elif isinstance(event, TryEvent):
            self._on_try(event)
        elif isinstance(event, ChoiceEvent):  # the kept try goes on with its own curve
            self._series, self._try, self._origin = f"seed {event.seed}", None, None
            self._loss_ema = self.loss_plot.series[self._series][1][-1]
            losses = ", ".join(f"seed {seed} {loss:.3f}" for seed, loss in event.losses.items())
            self.status.value = (
                f"Kept seed {event.seed} (loss over steps {event.first}-{event.last}: {losses})."
            )
        elif isinstance(event, EpochEvent) and event.validation:
            self.dice_plot.setVisible(True)
            self.dice_plot.append(self._series or "mean", event.step, event.validation["val_dice_mean"])

    def _plain_curves(self) -> None:
        """One loss curve and one validation-Dice curve (a run without tries)."""
        self.loss_plot.remove_all()
        self.loss_plot.add_series("train", LOSS_COLOURS[0])
        self.dice_plot.remove_all()
        self.dice_plot.add_series("mean", "#1f77b4")
        self._series: str | None = None  # the curves of the try that trains (None: no tries)
        self._try: TryEvent | None = None

    def _on_try(self, event: TryEvent) -> None:
        """A try starts: its own loss and Dice curves (one colour per seed), EMA and rate."""
        if self._series is None:  # the tries replace the single curves
            self.loss_plot.remove_all()
            self.dice_plot.remove_all()
        self._series, self._try = f"seed {event.seed}", event
        colour = LOSS_COLOURS[(event.index - 1) % len(LOSS_COLOURS)]
        self.loss_plot.add_series(self._series, colour)
        self.dice_plot.add_series(self._series, colour)
        self._loss_ema = self._origin = None

    def _on_step(self, event: StepEvent) -> None:
        ema = event.loss if self._loss_ema is None else 0.9 * self._loss_ema + 0.1 * event.loss
        self._loss_ema = ema
        self.loss_plot.append(self._series or "train", event.step, ema)
        self.progress.max = event.total_steps
        self.progress.value = event.step
        if self._origin is None:  # a kept try's clock includes the other tries: measure from here
            self._origin = (event.step, event.elapsed_s)
        elif event.step > self._origin[0]:
            self._rate = (event.elapsed_s - self._origin[1]) / (event.step - self._origin[0])
        text = f"step {event.step}/{event.total_steps}"
        if self._try is not None:
            t = self._try
            text = f"try {t.index}/{t.tries} (seed {t.seed}) · {text}"
        text += f" · loss {event.loss:.3f}"
        if self._rate is not None:  # what is left of the whole job, tries included
            text += f" · {format_duration(self._rate * event.remaining)} left"
        self.status.value = text

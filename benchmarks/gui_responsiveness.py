"""Is the viewer responsive while the Train dock trains on the CPU?

A QTimer fires every 10 ms in the main (GUI) thread and records how late each tick
is. The figures that matter are the stalls while a real training runs in the Train
dock's worker with the live preview on and the user paints: the longest, and how many
exceed 100 ms. A :class:`StrokePainter` paints as a hand would (a 1 s brush stroke of
20 dabs on the slice in view, every 4 s), so the strokes also reach the running training
(the dock sends them once the brush rests). Measured first, in the same run, as the
references: the probe with nothing running, and the same painting without training.
"start" is the one-time set-up from Start to the first step (data, network, preview layer).
``--size`` sets the side of the slices in view.

    xvfb-run -a -s "-screen 0 1366x768x24" .venv/bin/python benchmarks/gui_responsiveness.py \
        [--seconds 30] [--size 512]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import hardware, save_results, viewer_with_train_dock  # noqa: E402


class LatenessProbe:
    """Records, for every tick of a ``interval_ms`` QTimer, how late it fired (ms)."""

    def __init__(self, interval_ms: int = 10) -> None:
        from qtpy.QtCore import QTimer

        self.interval = interval_ms / 1000
        self.lateness: list[float] = []
        self._last: float | None = None
        self.timer = QTimer()
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self._tick)

    def _tick(self) -> None:
        now = time.perf_counter()
        if self._last is not None:
            self.lateness.append(max(0.0, now - self._last - self.interval) * 1000)
        self._last = now

    def run(self, app, seconds: float, until=None) -> np.ndarray:
        self.lateness, self._last = [], None
        self.timer.start()
        end = time.perf_counter() + seconds
        while time.perf_counter() < end and not (until and until()):
            app.processEvents()
            time.sleep(0.001)
        self.timer.stop()
        return np.asarray(self.lateness)


class StrokePainter:
    """Paints a horizontal brush stroke of ``dabs`` dabs, ``dab_ms`` apart, on the slice in
    view of ``layer`` every ``period_s`` seconds, with label ``value`` (as a mouse drag does:
    one ``Labels.paint`` per mouse move)."""

    def __init__(self, viewer, layer, value: int, period_s: float = 4.0, dabs: int = 20, dab_ms: int = 50):
        from qtpy.QtCore import QTimer

        self.viewer, self.layer, self.value = viewer, layer, value
        self.dabs, self.period = dabs, period_s
        self.strokes = 0
        self._dab = dabs
        self._next = 0.0
        self.timer = QTimer()
        self.timer.setInterval(dab_ms)
        self.timer.timeout.connect(self._tick)

    def _tick(self) -> None:
        now = time.perf_counter()
        if self._dab >= self.dabs:
            if now < self._next:
                return
            self._dab, self._next = 0, now + self.period
            self.strokes += 1
        height, width = self.layer.data.shape[-2:]
        row = (0.2 + 0.6 * ((self.strokes * 0.37) % 1)) * height
        column = (0.1 + 0.8 * self._dab / self.dabs) * width
        index = tuple(self.viewer.dims.current_step[: self.layer.ndim - 2])
        self.layer.paint((*index, row, column), self.value)
        self._dab += 1

    def start(self) -> None:
        self.layer.brush_size = 5
        self._dab, self._next = self.dabs, 0.0
        self.timer.start()

    def stop(self) -> None:
        self.timer.stop()


def summary(lateness: np.ndarray) -> dict:
    return {
        "ticks": int(lateness.size),
        "p50_ms": float(np.percentile(lateness, 50)),
        "p99_ms": float(np.percentile(lateness, 99)),
        "max_ms": float(lateness.max()),
        "over_100ms": int((lateness > 100).sum()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--size", type=int, default=512, help="side of the slices in view (px)")
    args = parser.parse_args()

    viewer, app, train, _ = viewer_with_train_dock(n_slices=4, painted_slices=2, size=args.size)
    viewer.window.resize(1366, 768)
    probe = LatenessProbe()
    painter = StrokePainter(viewer, train._labels_layer.value, value=2)

    idle = summary(probe.run(app, 5.0))
    painter.start()
    painting = summary(probe.run(app, 10.0))
    painter.stop()
    train.start()
    start = summary(probe.run(app, 60.0, until=lambda: train._progress.value >= 1))  # set-up, step 1
    shown, taken = [], []
    show, show_taken = train._show_preview, train._show_strokes_taken

    def counting(event) -> None:
        shown.append(event.step)
        show(event)

    def counting_taken(event) -> None:
        taken.append(event.accepted)
        show_taken(event)

    train._show_preview, train._show_strokes_taken = counting, counting_taken
    painter.start()
    training = summary(probe.run(app, args.seconds))
    painter.stop()
    steps = train._progress.value
    previews, updates = len(shown), sum(taken)
    train.stop()
    probe.run(app, 120.0, until=lambda: train.worker is None)
    results = {
        "hardware": hardware(),
        "idle": idle,
        "painting": painting,
        "start": start,
        "training": training,
        "training_steps_during_probe": steps,
        "preview": bool(train._preview.value),
        "seconds": args.seconds,
        "size": args.size,
        "previews_during_probe": previews,
        "stroke_updates_taken": updates,
    }
    path = save_results(results, f"gui_responsiveness_{args.size}")
    for name, row in (("idle", idle), ("painting", painting), ("start", start), ("training", training)):
        print(
            f"{name:9s} p50 {row['p50_ms']:.1f} ms  p99 {row['p99_ms']:.1f} ms  max {row['max_ms']:.1f} ms  "
            f"{row['over_100ms']} ticks over 100 ms"
        )
    size = f"{args.size}x{args.size}"
    print(f"{steps} steps, {previews} previews, {updates} stroke updates taken, {size} slices")
    print(f"results in {path}")
    viewer.close()


if __name__ == "__main__":
    main()

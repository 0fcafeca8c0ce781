"""Is the viewer responsive while the Train dock trains on the CPU?

A QTimer fires every 10 ms in the main (GUI) thread and records how late each tick
is. The figures that matter are the stalls while a real training runs in the Train
dock's worker with the live preview on: the longest, and how many exceed 100 ms (a user
paints while it trains); the same probe with nothing running is measured first, in the
same run, as the reference. ``--size`` sets the side of the slices in view.

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

    idle = summary(probe.run(app, 5.0))
    train.start()
    probe.run(app, 60.0, until=lambda: train._progress.value >= 1)  # data and model set-up
    shown = []
    show = train._show_preview

    def counting(event) -> None:
        shown.append(event.step)
        show(event)

    train._show_preview = counting
    training = summary(probe.run(app, args.seconds))
    steps = train._progress.value
    previews = len(shown)
    train.stop()
    probe.run(app, 120.0, until=lambda: train.worker is None)
    results = {
        "hardware": hardware(),
        "idle": idle,
        "training": training,
        "training_steps_during_probe": steps,
        "preview": bool(train._preview.value),
        "seconds": args.seconds,
        "size": args.size,
        "previews_during_probe": previews,
    }
    path = save_results(results, f"gui_responsiveness_{args.size}")
    for name, row in (("idle", idle), ("training", training)):
        print(
            f"{name:9s} p50 {row['p50_ms']:.1f} ms  p99 {row['p99_ms']:.1f} ms  max {row['max_ms']:.1f} ms  "
            f"{row['over_100ms']} ticks over 100 ms"
        )
    print(f"{steps} steps, {previews} previews, {args.size}x{args.size} slices")
    print(f"results in {path}")
    viewer.close()


if __name__ == "__main__":
    main()

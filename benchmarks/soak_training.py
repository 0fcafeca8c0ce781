"""Soak: train in a real viewer for a long time with live previews; does memory stay flat?

The Train dock trains its default model on the synthetic sample stack on the CPU with the
live preview on; every minute the script records the process's resident memory (RSS) and
moves the viewer to another slice (so the preview follows). Growth is measured from the
end of the first minute (after warm-up: allocator pools, first preview layer) to the end.

    xvfb-run -a .venv/bin/python benchmarks/soak_training.py [--minutes 30]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).parent))
from common import hardware, save_results, viewer_with_train_dock  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=30.0)
    args = parser.parse_args()

    viewer, app, train, sample = viewer_with_train_dock(n_slices=8, painted_slices=4)
    process = psutil.Process()
    rss_mb, steps = [], []
    train.start()
    start = time.time()
    for minute in range(1, int(args.minutes) + 1):
        while time.time() < start + 60 * minute:
            app.processEvents()
            time.sleep(0.01)
        rss_mb.append(process.memory_info().rss / 2**20)
        steps.append(train._progress.value)
        viewer.dims.set_current_step(0, minute % sample.image.shape[0])
        print(f"minute {minute:3d}  step {steps[-1]:6d}  RSS {rss_mb[-1]:8.1f} MB", flush=True)
    train.stop()
    while train.worker is not None:
        app.processEvents()
        time.sleep(0.05)
    growth = (rss_mb[-1] - rss_mb[0]) / rss_mb[0]
    results = {
        "hardware": hardware(),
        "minutes": args.minutes,
        "rss_mb_per_minute": rss_mb,
        "steps_per_minute": steps,
        "growth_from_minute_1": growth,
        "preview": bool(train._preview.value),
    }
    path = save_results(results, "soak_training")
    print(
        f"RSS {rss_mb[0]:.1f} MB after minute 1, {rss_mb[-1]:.1f} MB at the end: growth {100 * growth:+.2f} %"
    )
    print(f"results in {path}")
    viewer.close()


if __name__ == "__main__":
    main()

"""How long is one round of the human-in-the-loop cycle with the Train dock's defaults?

Trains as the Train dock does with untouched controls (``ModelSpec()`` and ``TrainConfig()``:
the dock's initial values are these defaults, tested in tests/test_dock_messages.py), with the live
preview of one painted slice every 3 seconds, and scores every preview against that slice's
ground truth (foreground Dice). A round is the time from Start (data and model set-up
included) to the first preview within 0.02 Dice of the final one; "useful" is the first
within 0.05; "settled" the preview from which on every later one stays within 0.02 (the
previews of a run still swing by a few hundredths). Sets:

  sample  the plugin's sample data (synthetic nuclei, 4 slices of 256 px, strokes on 2),
          nucleus Dice of slice 0
  isbi    ISBI 2012 EM membranes, the seed-0 scribbles of isbi_sparse.py on slices 2, 10,
          18 (<= 2 % of their pixels), membrane Dice of slice 2

    python benchmarks/round_time.py [--sets sample isbi] [--steps N]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import tifffile

sys.path.insert(0, str(Path(__file__).parent))
from common import DATA, hardware, save_results  # noqa: E402
from scribbles import draw_scribbles  # noqa: E402

from napari_unetseg.core.config import ModelSpec, TrainConfig  # noqa: E402
from napari_unetseg.core.events import PreviewEvent  # noqa: E402
from napari_unetseg.core.sample import make_sample  # noqa: E402
from napari_unetseg.core.training import make_trainer  # noqa: E402

PREVIEW_INTERVAL_S = 3.0  # the Train dock's


def load(name: str):
    """``(image stack (N, 1, Y, X), strokes (N, Y, X), truth of slice 0, foreground value)``."""
    if name == "sample":
        sample = make_sample()
        return sample.image[:, None], sample.strokes, sample.truth[0], 2
    folder = DATA / "isbi2012_em_membranes"
    images, labels = tifffile.imread(folder / "images.tif"), tifffile.imread(folder / "labels.tif")
    slices = [2, 10, 18]
    rng = np.random.default_rng(0)
    strokes = np.stack([draw_scribbles(labels[i], rng, 8, 80, 60) for i in slices])
    return images[slices][:, None], strokes, labels[slices[0]], 1


def dice(pred: np.ndarray, truth: np.ndarray, value: int) -> float:
    p, t = pred == value, truth == value
    return float(2 * (p & t).sum() / max(1, p.sum() + t.sum()))


def one_round(name: str, steps: int | None) -> dict:
    images, strokes, truth, value = load(name)
    config = TrainConfig() if steps is None else TrainConfig(steps=steps)
    start = time.perf_counter()
    trainer = make_trainer([images], [strokes], ModelSpec(), config)
    trainer.preview_interval_s = PREVIEW_INTERVAL_S
    trainer.set_preview(0)
    previews = []
    for event in trainer.run():
        if isinstance(event, PreviewEvent):
            previews.append((time.perf_counter() - start, event.step, dice(event.labels, truth, value)))
    total = time.perf_counter() - start
    final = previews[-1][2]

    def first_within(margin: float) -> tuple[float, int]:
        return next((t, s) for t, s, d in previews if d >= final - margin)

    (round_s, round_step), (useful_s, useful_step) = first_within(0.02), first_within(0.05)
    settled = len(previews) - 1
    while settled > 0 and previews[settled - 1][2] >= final - 0.02:
        settled -= 1
    settled_s, settled_step = previews[settled][:2]
    return {
        "set": name,
        "steps": config.steps,
        "total_s": round(total, 1),
        "final_dice": round(final, 4),
        "round_s": round(round_s, 1),
        "round_step": round_step,
        "useful_s": round(useful_s, 1),
        "useful_step": useful_step,
        "settled_s": round(settled_s, 1),
        "settled_step": settled_step,
        "previews": [(round(t, 1), s, round(d, 4)) for t, s, d in previews],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sets", nargs="+", default=["sample", "isbi"], choices=["sample", "isbi"])
    parser.add_argument("--steps", type=int, help="training steps (default: the dock's)")
    args = parser.parse_args()
    rows = [one_round(name, args.steps) for name in args.sets]
    path = save_results({"hardware": hardware(), "rounds": rows}, "round_time")
    print(hardware())
    for row in rows:
        print(
            f"{row['set']:7s} {row['steps']} steps in {row['total_s']} s, final Dice {row['final_dice']}: "
            f"within 0.05 at {row['useful_s']} s (step {row['useful_step']}), "
            f"within 0.02 at {row['round_s']} s (step {row['round_step']}), "
            f"stays within 0.02 from {row['settled_s']} s (step {row['settled_step']})"
        )
    print(f"results in {path}")


if __name__ == "__main__":
    main()

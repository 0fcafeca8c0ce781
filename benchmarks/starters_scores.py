"""The shipped starters' own scores, for their model cards: zero-shot Dice of the object
class (nucleus / membrane) on the test split of every set of their recipe.

    python benchmarks/starters_scores.py                  # every starter in the package
    python benchmarks/starters_scores.py nuclei           # one

These sets' training splits are what the starter learnt from (scripts/train_starters.py),
so these are in-distribution scores; what a starter does on data it has not seen is
benchmarks/starters_transfer.py. Results in benchmarks/results/starters_scores.json.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from common import hardware, save_results  # noqa: E402
from starters_transfer import object_counts, pooled_dice  # noqa: E402
from train_starters import RECIPES, training_pairs  # noqa: E402


def object_dice(model, pairs) -> float:
    """Dice of class 2 (the recipes' object) pooled over ``(image (N, 1, Y, X), classes (N, Y, X))`` pairs."""
    return pooled_dice(sum(object_counts(model, image, classes == 2, 2) for image, classes in pairs))


def main() -> None:
    from napari_unetseg.core.checkpoint import load_model
    from napari_unetseg.core.starters import available

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="starters to score (default: all)")
    args = parser.parse_args()
    starters = available()
    results = {"hardware": hardware(), "scores": {}}
    for name in args.names or list(starters):
        model = load_model(starters[name].path)
        for folder in RECIPES[name].sets:
            start = time.perf_counter()
            pairs = training_pairs(folder, "test")
            score = object_dice(model, pairs)
            images = int(sum(len(image) for image, _ in pairs))
            seconds = round(time.perf_counter() - start, 1)
            row = {"dice": round(score, 4), "test_images": images, "seconds": seconds}
            results["scores"].setdefault(name, {})[folder] = row
            print(name, folder, row, flush=True)
        mean = np.mean([row["dice"] for row in results["scores"][name].values()])
        print(f"{name}: mean over sets {mean:.3f}", flush=True)
    print(save_results(results, "starters_scores"))


if __name__ == "__main__":
    main()

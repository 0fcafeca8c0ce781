"""Can a failed scribble run be told from its first steps? (results files only, no training)

For each draw of strokes, reads the loss curves of three training seeds (the mean loss
per 50 steps that ``isbi_sparse.py`` stores, from the full run or from a run stopped with
``--stop-after``) and the membrane Dice of their full runs, then picks the seed with the
lowest mean loss over steps ``--window`` (no test labels involved) and reports the Dice
of the full run of that seed, next to the mean Dice of the three seeds.

    python benchmarks/isbi_tries.py [--suffix c10] [--window 51-100]

reads ``results/s{draw}t{seed}{suffix}.json`` (full runs; where one is missing, its saved
model file ``s{draw}t{seed}{suffix}_scribbles.pt`` is scored on the test slices) and,
where a full run has no loss curve, ``results/s{draw}t{seed}{suffix}_100.json`` (its
first 100 steps, from ``isbi_sparse.py --stop-after 100``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import RESULTS, save_results  # noqa: E402

WINDOW = 50  # steps per value of isbi_sparse.py's loss curves


def read(name: str) -> dict | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text())["scribbles"] if path.is_file() else None


def membrane_dice(name: str) -> float:
    """The full run's membrane Dice: from its results file, else from its model file."""
    run = read(name)
    if run is not None:
        return run["membrane_dice"]
    from isbi_predictions import isbi_test_slices

    from napari_unetseg.core.checkpoint import load_model
    from napari_unetseg.core.config import PredictConfig
    from napari_unetseg.core.prediction import predict_stack

    model_file = RESULTS / f"{name}_scribbles.pt"
    if not model_file.is_file():
        sys.exit(f"neither {name}.json nor {model_file.name} in {RESULTS}")
    images, truth = isbi_test_slices()
    membrane = predict_stack(load_model(model_file), images, PredictConfig(tile_size=512)).labels == 1
    return round(float(2 * (membrane & truth).sum() / (membrane.sum() + truth.sum())), 4)


def early_loss(draw: int, seed: int, suffix: str, first: int, last: int) -> float:
    """Mean loss over steps ``first``..``last`` (1-based, whole 50-step windows)."""
    for name in (f"s{draw}t{seed}{suffix}", f"s{draw}t{seed}{suffix}_100"):
        run = read(name)
        if run and "loss_per_50_steps" in run and len(run["loss_per_50_steps"]) * WINDOW >= last:
            return float(np.mean(run["loss_per_50_steps"][(first - 1) // WINDOW : last // WINDOW]))
    sys.exit(f"no loss curve up to step {last} for draw {draw}, training seed {seed}{suffix}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--suffix", default="", help="run-name suffix of the recipe, e.g. c10")
    parser.add_argument("--window", default="51-100", help="steps whose mean loss picks the seed")
    parser.add_argument("--draws", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    first, last = (int(v) for v in args.window.split("-"))
    rows = {}
    for draw in args.draws:
        dice = {t: membrane_dice(f"s{draw}t{t}{args.suffix}") for t in args.seeds}
        loss = {t: round(early_loss(draw, t, args.suffix, first, last), 4) for t in args.seeds}
        chosen = min(loss, key=loss.get)
        rows[draw] = {"dice": dice, "early_loss": loss, "chosen_seed": chosen, "chosen_dice": dice[chosen]}
        print(
            f"draw {draw}: "
            + "  ".join(f"seed {t}: loss {loss[t]:.3f} Dice {dice[t]:.4f}" for t in args.seeds)
            + f"  -> seed {chosen}, {dice[chosen]:.4f} (mean of the seeds {np.mean(list(dice.values())):.4f})"
        )
    chosen = np.mean([row["chosen_dice"] for row in rows.values()])
    print(f"mean over the draws: lowest early loss {chosen:.4f}")
    name = f"isbi_tries{args.suffix}_{first}-{last}"
    save_results({"window": [first, last], "suffix": args.suffix, "draws": rows, "mean_chosen": chosen}, name)


if __name__ == "__main__":
    main()

"""What a starter model buys: fine-tuning from strokes, starter against random weights.

    python benchmarks/starters_transfer.py --set sbsst265 --starter STARTER.pt
    python benchmarks/starters_transfer.py --set isbi --starter EM_STARTER.pt

The starter must not have seen the evaluation set nor the painted images
(scripts/train_starters.py nuclei --leave-out sbsst265; for EM, of which ../shared/data
holds one stack only, em-membranes --leave-out painted: trained on ISBI slices 3-23, the
user paints slices 0-2 and the test is slices 24-29, the same stack: say so). A user's
strokes are simulated on a few training images of the set (nuclei: a background stroke in
each cell of a 4 x 4 grid and a stroke across 12 nuclei, as the sample data's; EM:
benchmarks/scribbles.py), then
a U-Net with the CLI defaults (sparse labels) trains N steps from random weights and from
the starter (its classes matched by name), for N = 25, 50, 100, 200, 500 (separate runs,
each with its own learning-rate schedule, as a user setting --steps would), and predicts
the test images: Dice of the object class (nucleus / membrane) pooled over them; the
starter's zero-shot Dice too. Results in benchmarks/results/starters_<set>.json.
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
from train_starters import training_pairs  # noqa: E402


def fine_tune_data(name: str, images: int, seed: int):
    """``(images (N, 1, Y, X), strokes (N, Y, X), class names)`` painted on the first training images."""
    rng = np.random.default_rng(seed)
    if name == "isbi":
        from scribbles import draw_scribbles

        image, classes = training_pairs("isbi2012_em_membranes", "train")[0]
        image, membrane = image[:images], classes[:images] == 2
        strokes = np.stack(
            [draw_scribbles(m.astype(np.uint8), rng) for m in membrane]
        )  # 1 membrane, 2 interior
        return image, strokes, ["membrane", "interior"]
    from napari_unetseg.core.sample import _strokes

    image, classes = training_pairs("sbsst265_1024x1280", "train")[0]
    image, nuclei = image[:images], classes[:images] == 2
    strokes = np.stack([_strokes(m, rng, grid=4, nuclei=12) for m in nuclei])  # 1 background, 2 nucleus
    return image, strokes, ["background", "nucleus"]


def test_data(name: str):
    """``(images (N, 1, Y, X), object mask (N, Y, X))`` of the set's test split."""
    if name == "isbi":
        image, classes = training_pairs("isbi2012_em_membranes", "test")[0]
    else:
        image, classes = training_pairs("sbsst265_1024x1280", "test")[0]
    return image, classes == 2


def object_counts(model, images: np.ndarray, truth: np.ndarray, object_value: int) -> np.ndarray:
    """``(overlap, predicted, true)`` pixel counts of the object class over ``images``."""
    from napari_unetseg.core.config import PredictConfig
    from napari_unetseg.core.prediction import predict_stack

    labels = predict_stack(model, images, PredictConfig(device="cpu")).labels == object_value
    return np.array([(labels & truth).sum(), labels.sum(), truth.sum()])


def pooled_dice(counts: np.ndarray) -> float:
    """Dice from summed :func:`object_counts`."""
    overlap, predicted, true = counts
    return float(2 * overlap / max(1, predicted + true))


def dice(model, images: np.ndarray, truth: np.ndarray, object_value: int) -> float:
    return pooled_dice(object_counts(model, images, truth, object_value))


def run_arm(
    images, strokes, names, steps: int, seed: int, init: Path | None, learning_rate: float | None = None
):
    from napari_unetseg.core.config import ModelSpec, RunOptions, TrainConfig
    from napari_unetseg.core.training import train

    start = time.perf_counter()
    config = TrainConfig(steps=steps, seed=seed, device="cpu")
    if learning_rate is not None:
        config = config.replace(learning_rate=learning_rate)
    result = train([images], [strokes], ModelSpec(), config, RunOptions(init=init), class_names=names)
    return result.loaded, (time.perf_counter() - start) / 60


def main() -> None:
    from napari_unetseg.core.checkpoint import load_model

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", choices=["sbsst265", "isbi"], required=True)
    parser.add_argument("--starter", type=Path, required=True, help="a starter that has not seen the set")
    parser.add_argument("--steps", type=int, nargs="+", default=[25, 50, 100, 200, 500])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--images", type=int, default=3, help="training images painted")
    parser.add_argument("--arms", nargs="+", default=["scratch", "starter"], help="scratch, starter")
    parser.add_argument(
        "--starter-lr", type=float, help="the starter arm's learning rate (default: the default)"
    )
    parser.add_argument("--name", default="", help="suffix of the results file")
    args = parser.parse_args()
    test_images, truth = test_data(args.set)
    results = {"hardware": hardware(), "set": args.set, "starter": str(args.starter), "runs": []}
    for seed in args.seeds:
        images, strokes, names = fine_tune_data(args.set, args.images, seed)
        object_value = 1 + names.index("membrane" if args.set == "isbi" else "nucleus")
        painted = float((strokes > 0).mean())
        starter = load_model(args.starter)
        zero = dice(starter, test_images, truth, 2)  # the starter's own numbering: 2 = its object class
        results["runs"].append({"seed": seed, "arm": "starter", "steps": 0, "dice": round(zero, 4)})
        print(f"seed {seed}: painted {painted:.2%}; starter zero-shot Dice {zero:.3f}", flush=True)
        for steps in args.steps:
            for arm, init in (("scratch", None), ("starter", args.starter)):
                if arm not in args.arms:
                    continue
                rate = args.starter_lr if init is not None else None
                model, minutes = run_arm(images, strokes, names, steps, seed, init, rate)
                score = dice(model, test_images, truth, object_value)
                row = {
                    "seed": seed,
                    "arm": arm,
                    "steps": steps,
                    "dice": round(score, 4),
                    "minutes": round(minutes, 2),
                }
                results["runs"].append(row)
                print(row, flush=True)
        results["painted"] = painted
    print(save_results(results, f"starters_{args.set}{args.name}"))


if __name__ == "__main__":
    main()

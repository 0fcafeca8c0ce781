"""Sparse scribbles vs dense labels on ISBI 2012 EM membranes (class 1 = membrane).

Trains the same network (U-Net base 16, depth 4 unless ``--model``/``--base`` say
otherwise) for the same number of CPU steps on
  scribbles  thin strokes on 3 training slices (<= 2 % of their pixels), sparse mode
  (a)        the dense labels of the same 3 slices
  (b)        the dense labels of all 24 training slices
and, on the same scribbles, (c) scikit-image's trainable segmentation (random forest on
multiscale features: the ilastik recipe). Reports membrane Dice on test slices 24-29.

    python benchmarks/isbi_sparse.py [--steps 400] [--arms scribbles a b c] [--model unetplusplus]
        [--set KEY=VALUE ...] [--tta] [--save-models]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import tifffile

sys.path.insert(0, str(Path(__file__).parent))
from common import DATA, RESULTS, hardware, random_forest, save_results  # noqa: E402
from scribbles import draw_scribbles  # noqa: E402

from napari_unetseg.core.checkpoint import save_model  # noqa: E402
from napari_unetseg.core.config import ModelSpec, PredictConfig, TrainConfig  # noqa: E402
from napari_unetseg.core.events import ChoiceEvent, StepEvent, TryEvent, run_generator  # noqa: E402
from napari_unetseg.core.prediction import predict_stack  # noqa: E402
from napari_unetseg.core.training import make_trainer  # noqa: E402

TRAIN, TEST, SLICES = list(range(24)), list(range(24, 30)), [2, 10, 18]


def membrane_dice(pred: np.ndarray, truth: np.ndarray) -> float:
    p, t = pred == 1, truth == 1
    return float(2 * (p & t).sum() / (p.sum() + t.sum()))


def unet_arm(images, labels, mode, steps, seed, overrides, tta=False, model="unet", base=16, stop_after=None):
    """Train one network arm; its membrane Dice (``None`` when stopped early), time,
    prediction, model, per-step losses (with ``--set tries=N``: the kept try's) and the
    tries' :class:`ChoiceEvent` (``None`` without tries)."""
    spec = ModelSpec(name=model, depth=4, base_channels=base)
    recipe = dict(
        label_mode=mode, steps=steps, patch_size=256, batch_size=4, seed=seed, steps_per_epoch=steps
    )
    # from_dict: --set takes today's keys (learn_unpainted=true, advanced={...}) and the flat keys of
    # earlier versions (consistency_weight=10, smoothness_weight=10, ...), so the commands in
    # docs/benchmarks.md run as written
    config = TrainConfig.from_dict({**recipe, "validation_fraction": 0, **overrides})
    curves = {None: []}  # every step's training loss, per try's seed (None: no tries)
    state = {"seed": None, "choice": None}
    trainer = make_trainer([images[:, None]], [labels], spec, config)

    def record(event) -> None:
        if isinstance(event, StepEvent):
            curves[state["seed"]].append(event.loss)
            if event.step == stop_after:
                trainer.request_stop()  # the start of the run, with the full run's schedule
        elif isinstance(event, TryEvent):
            state["seed"], curves[event.seed] = event.seed, []
        elif isinstance(event, ChoiceEvent):
            state["seed"], state["choice"] = event.seed, event

    start = time.perf_counter()
    loaded = run_generator(trainer.run(), record).loaded
    seconds = time.perf_counter() - start
    losses = curves[state["seed"]]
    if stop_after is not None:
        return None, seconds, None, loaded, losses, state["choice"]
    pred = predict_stack(loaded, IMAGES[TEST][:, None], PredictConfig(tile_size=512, tta=tta)).labels
    return membrane_dice(pred, LABELS[TEST]), seconds, pred, loaded, losses, state["choice"]


def window_means(values: list[float], window: int = 50) -> list[float]:
    """Mean of each run of ``window`` consecutive values (the loss curve, smoothed)."""
    return [round(float(np.mean(values[i : i + window])), 4) for i in range(0, len(values), window)]


def forest_arm(scribbles) -> tuple[float, float]:
    pred, seconds = random_forest(IMAGES[SLICES], scribbles, IMAGES[TEST])
    return membrane_dice(pred, LABELS[TEST]), seconds


def main() -> None:
    global IMAGES, LABELS
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0, help="draws the scribbles (and seeds training)")
    parser.add_argument("--train-seed", type=int, help="seeds training instead of --seed")
    parser.add_argument("--arms", nargs="+", default=["scribbles", "a", "b", "c"])
    parser.add_argument(
        "--set",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="TrainConfig overrides for the U-Net arms, e.g. tries=3 learn_unpainted=true "
        "or a research option of TrainConfig.advanced: smoothness_weight=10",
    )
    parser.add_argument("--name", default="isbi_sparse", help="results file name")
    parser.add_argument("--model", default="unet", help="architecture of the network arms")
    parser.add_argument("--base", type=int, default=16, help="base width of the network arms")
    parser.add_argument("--tta", action="store_true", help="flip test-time augmentation for the U-Net arms")
    parser.add_argument("--save-models", action="store_true", help="keep each U-Net arm's model file")
    parser.add_argument(
        "--stop-after",
        type=int,
        help="stop the network arms after this many of the --steps (their loss curve only, no Dice)",
    )
    parser.add_argument("--strokes", type=int, default=8, help="strokes per class and slice")
    parser.add_argument("--membrane-length", type=int, default=80, help="membrane stroke length (px)")
    parser.add_argument(
        "--whole-stack",
        action="store_true",
        help="scribbles arm: train on all 24 training slices with the strokes on 3 of them "
        "(the others unpainted, as in a napari Labels layer over the whole stack)",
    )
    parser.add_argument("--interior-length", type=int, default=60, help="interior stroke length (px)")
    args = parser.parse_args()
    folder = DATA / "isbi2012_em_membranes"
    if not folder.is_dir():
        sys.exit(f"data not found: {folder}")
    IMAGES, LABELS = tifffile.imread(folder / "images.tif"), tifffile.imread(folder / "labels.tif")
    rng = np.random.default_rng(args.seed)
    scribbles = np.stack(
        [
            draw_scribbles(LABELS[i], rng, args.strokes, args.membrane_length, args.interior_length)
            for i in SLICES
        ]
    )
    train_seed = args.seed if args.train_seed is None else args.train_seed
    overrides = {k: json.loads(v) for k, v in (item.split("=", 1) for item in args.set)}
    results = {
        "overrides": overrides,
        "hardware": hardware(),
        "steps": args.steps,
        "seed": args.seed,
        "train_seed": train_seed,
        "tta": args.tta,
        "whole_stack": args.whole_stack,
        "model": args.model,
        "base": args.base,
        "slices": SLICES,
        "scribble_fraction": float((scribbles > 0).mean()),
        "scribble_pixels": {"membrane": int((scribbles == 1).sum()), "interior": int((scribbles == 2).sum())},
    }
    print(f"{results['hardware']}\nscribbles cover {results['scribble_fraction']:.2%} of slices {SLICES}")

    def network_arm(images, labels, mode):
        options = dict(tta=args.tta, model=args.model, base=args.base, stop_after=args.stop_after)
        return lambda: unet_arm(images, labels, mode, args.steps, train_seed, overrides, **options)

    if args.whole_stack:
        painted = np.zeros(LABELS[TRAIN].shape, scribbles.dtype)
        painted[SLICES] = scribbles
        scribble_arm = network_arm(IMAGES[TRAIN], painted, "sparse")
    else:
        scribble_arm = network_arm(IMAGES[SLICES], scribbles, "sparse")
    arms = {
        "scribbles": scribble_arm,
        "a": network_arm(IMAGES[SLICES], LABELS[SLICES], "dense"),
        "b": network_arm(IMAGES[TRAIN], LABELS[TRAIN], "dense"),
    }
    for arm in args.arms:
        if arm == "c":
            dice, seconds = forest_arm(scribbles)
        else:
            dice, seconds, pred, loaded, losses, choice = arms[arm]()
            if dice is None:  # --stop-after: the loss curve only
                curve = window_means(losses)
                results[arm] = {
                    "stopped_after": len(losses),
                    "seconds": round(seconds, 1),
                    "loss_per_50_steps": curve,
                }
                print(f"{arm:>10}: stopped after {len(losses)} steps, loss per 50 steps {curve}", flush=True)
                continue
            RESULTS.mkdir(exist_ok=True)
            tifffile.imwrite(RESULTS / f"{args.name}_{arm}.tif", pred)  # for looking at
            if args.save_models:
                save_model(loaded, RESULTS / f"{args.name}_{arm}.pt")
        results[arm] = {"membrane_dice": round(dice, 4), "seconds": round(seconds, 1)}
        if arm != "c":
            results[arm]["loss_per_50_steps"] = window_means(losses)
            if choice is not None:
                results[arm]["tries"] = {
                    "kept": choice.seed,
                    "losses": choice.losses,
                    "steps": [choice.first, choice.last],
                }
                print(f"{arm:>10}: kept seed {choice.seed} of the tries, losses {choice.losses}", flush=True)
        print(f"{arm:>10}: membrane Dice {dice:.4f}  ({seconds:.0f} s)", flush=True)
    if "scribbles" in results and "a" in results:
        results["ratio_vs_a"] = round(
            results["scribbles"]["membrane_dice"] / results["a"]["membrane_dice"], 3
        )
    if "scribbles" in results and "c" in results:
        results["ratio_vs_c"] = round(
            results["scribbles"]["membrane_dice"] / results["c"]["membrane_dice"], 3
        )
    print({k: v for k, v in results.items() if k.startswith("ratio")})
    print("saved", save_results(results, args.name))


if __name__ == "__main__":
    main()

"""Every registered architecture on ISBI 2012 EM membranes and DSB2018 nuclei, in one run.

For each model: IoU and Dice of the foreground class on the test images, parameters,
GFLOP per 256x256 tile (2 FLOP per multiply-add, counted by
``torch.utils.flop_counter``), training time, and prediction speed (MPix/s on a
1024x1024 image with the default prediction settings). UNet++ is also scored from
each of its pruned heads L1..L4. All models get the same training recipe and the
same step budget; the prediction speeds are measured after all training, back to back.

* ISBI 2012 (``isbi2012_em_membranes``): train on slices 0-23 (dense), test 24-29,
  class 1 = membrane; patches 256, batch 4.
* DSB2018 at 96x96 (``dsb2018_96``): the 536/134 split of meta.json, class 1 = nucleus,
  IoU as the mean over test images; patches 96, batch 16.

    python benchmarks/architectures.py [--datasets isbi dsb] [--steps 200] [--base 16]
    python benchmarks/architectures.py --speed-only   # seconds per training step, MPix/s

``--speed-only`` times every architecture back to back on an otherwise idle machine:
seconds per training step (ISBI recipe, mean of 10 steps after 2 warm-up steps) and
prediction MPix/s, without training to the end (weights do not change the speed).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import tifffile
import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).parent))
from common import DATA, hardware, save_results  # noqa: E402

from napari_unetseg.core.checkpoint import LoadedModel, pruned  # noqa: E402
from napari_unetseg.core.config import ModelSpec, PredictConfig, TrainConfig  # noqa: E402
from napari_unetseg.core.models import MODELS, count_parameters  # noqa: E402
from napari_unetseg.core.prediction import predict_stack  # noqa: E402
from napari_unetseg.core.training import train  # noqa: E402


def scores(pred: np.ndarray, truth: np.ndarray, per_image: bool) -> dict[str, float]:
    """IoU and Dice of class 1: pooled over all pixels, or the mean over images."""
    p, t = (pred == 1).reshape(len(pred), -1), (truth == 1).reshape(len(truth), -1)
    inter, total = (p & t).sum(1), p.sum(1) + t.sum(1)
    if per_image:
        union = total - inter
        iou = np.where(union > 0, inter / np.maximum(union, 1), 1.0).mean()
        dice = np.where(total > 0, 2 * inter / np.maximum(total, 1), 1.0).mean()
    else:
        iou, dice = inter.sum() / (total - inter).sum(), 2 * inter.sum() / total.sum()
    return {"iou": round(float(iou), 4), "dice": round(float(dice), 4)}


def gflop_per_tile(model: torch.nn.Module, channels: int) -> float:
    model = model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, channels, 256, 256))
    return round(counter.get_total_flops() / 1e9, 2)


def mpix_per_second(loaded: LoadedModel, repeats: int = 2) -> float:
    """Default prediction of a 1024x1024 image (one slice), best of ``repeats``."""
    channels = loaded.spec.in_channels
    image = np.random.default_rng(0).random((1, channels, 1024, 1024), dtype=np.float32)
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        predict_stack(loaded, image, PredictConfig(device="cpu"))
        best = min(best, time.perf_counter() - start)
    return round(1024 * 1024 / best / 1e6, 3)


def seconds_per_step(spec: ModelSpec, images, labels, recipe: dict, steps: int = 10) -> float:
    """Mean wall time of ``steps`` training steps after two warm-up steps."""
    from napari_unetseg.core.training import Trainer

    config = TrainConfig(
        label_mode="dense",
        steps=steps + 2,
        validation_fraction=0,
        device="cpu",
        advanced={"labelled_sampling": 0.0},
        **recipe,
    )
    from napari_unetseg.core.events import StepEvent

    run = Trainer(images, labels, spec, config).run()
    times = [time.perf_counter() for event in run if isinstance(event, StepEvent)]
    return round((times[-1] - times[1]) / (len(times) - 2), 3) if len(times) > 2 else float("nan")


def speed_only(args) -> dict:
    """Training seconds per step and prediction MPix/s of every model, back to back."""
    from napari_unetseg.core.checkpoint import LoadedModel as Loaded
    from napari_unetseg.core.models import build_model

    (images, labels), _, _, recipe, _ = load_isbi()
    out = {}
    for name in args.models:
        spec = ModelSpec(name=name, depth=4, base_channels=args.base)
        entry = {"s_per_step": seconds_per_step(spec, images, labels, recipe)}
        loaded = Loaded(build_model(spec).eval(), spec, (0, 1))
        entry["mpix_per_s_1024"] = mpix_per_second(loaded)
        if name == "unetplusplus":
            for head in range(1, spec.depth):
                entry[f"mpix_per_s_1024_L{head}"] = mpix_per_second(pruned(loaded, head))
        out[name] = entry
        print(name, entry, flush=True)
    return out


def load_isbi():
    folder = DATA / "isbi2012_em_membranes"
    images, labels = tifffile.imread(folder / "images.tif"), tifffile.imread(folder / "labels.tif")
    train_set = ([images[:24, None]], [labels[:24]])  # one stack of 24 slices
    test_images = [images[24:30, None]]
    return train_set, test_images, labels[24:30], dict(patch_size=256, batch_size=4), False


def load_dsb():
    folder = DATA / "dsb2018_96"
    images = np.moveaxis(tifffile.imread(folder / "images.tif"), -1, 1)  # (670, 3, 96, 96)
    labels = tifffile.imread(folder / "labels.tif")
    split = json.loads((folder / "meta.json").read_text())["split_suggestion"]
    train_idx, test_idx = split["train"], split["test"]
    # each image is its own stack: normalised on its own, as a user's files would be
    train_set = ([images[i : i + 1] for i in train_idx], [labels[i : i + 1] for i in train_idx])
    test_images = [images[i : i + 1] for i in test_idx]
    return train_set, test_images, labels[test_idx], dict(patch_size=96, batch_size=16), True


DATASETS = {"isbi": load_isbi, "dsb": load_dsb}


def predict_all(loaded: LoadedModel, stacks: list[np.ndarray]) -> np.ndarray:
    config = PredictConfig(device="cpu")
    return np.concatenate([predict_stack(loaded, stack, config).labels for stack in stacks])


def run_dataset(name: str, models: list[str], args) -> tuple[dict, dict[str, LoadedModel]]:
    (images, labels), test_images, truth, recipe, per_image = DATASETS[name]()
    rows, trained = {}, {}
    for model_name in models:
        spec = ModelSpec(name=model_name, depth=4, base_channels=args.base)
        config = TrainConfig(
            label_mode="dense",
            steps=args.steps,
            learning_rate=args.lr,
            steps_per_epoch=args.steps,
            validation_fraction=0,
            device="cpu",
            seed=args.seed,
            advanced={"labelled_sampling": 0.0},
            **recipe,
        )
        start = time.perf_counter()
        loaded = train(images, labels, spec, config).loaded
        seconds = time.perf_counter() - start
        channels = loaded.spec.in_channels
        rows[model_name] = {
            **scores(predict_all(loaded, test_images), truth, per_image),
            "parameters": count_parameters(loaded.model),
            "gflop_256": gflop_per_tile(loaded.model, channels),
            "train_seconds": round(seconds, 1),
        }
        print(f"{name} {model_name}: {rows[model_name]}", flush=True)
        trained[model_name] = loaded
        if model_name == "unetplusplus" and loaded.spec.deep_supervision:
            for head in range(1, loaded.spec.depth):
                small = pruned(loaded, head)
                key = f"unetplusplus L{head}"
                rows[key] = {
                    **scores(predict_all(small, test_images), truth, per_image),
                    "parameters": count_parameters(small.model),
                    "gflop_256": gflop_per_tile(small.model, channels),
                }
                trained[key] = small
                print(f"{name} {key}: {rows[key]}", flush=True)
    return rows, trained


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--base", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--speed-only", action="store_true", help="time steps and prediction only")
    args = parser.parse_args()
    results = {"hardware": hardware(), "steps": args.steps, "base": args.base, "lr": args.lr}
    print(results["hardware"], flush=True)
    if args.speed_only:
        results["speed"] = speed_only(args)
        print(save_results(results, "architectures_speed"))
        return
    speed_models: dict[str, LoadedModel] = {}
    if not DATA.is_dir():
        sys.exit(f"data not found: {DATA}")
    for name in args.datasets:
        results[name], trained = run_dataset(name, args.models, args)
        speed_models = speed_models or trained  # speed: one trained copy of each architecture
        save_results(results, "architectures")
    results["mpix_per_s_1024"] = {key: mpix_per_second(loaded) for key, loaded in speed_models.items()}
    print("MPix/s:", results["mpix_per_s_1024"], flush=True)
    print(save_results(results, "architectures"))


if __name__ == "__main__":
    main()

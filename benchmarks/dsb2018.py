"""U-Net and UNet++ on DSB2018 nuclei at 96x96 (the UNet++ paper's "cell nuclei" setting).

Split: ``np.random.RandomState(41).permutation(670)``, first 134 = test (meta.json).
Trains on the 536 training images (dense labels, 0 = background, 1 = nucleus) and
reports the nucleus IoU on the 134 test images: the mean of per-image IoU (as
pytorch-nested-unet's ``iou_score`` averages over batches) and the pooled IoU.

    python benchmarks/dsb2018.py [--models unet unetplusplus] [--steps 3000] [--base 32]
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
from common import DATA, hardware, save_results  # noqa: E402

from napari_unetseg.core.config import ModelSpec, PredictConfig, TrainConfig  # noqa: E402
from napari_unetseg.core.prediction import predict_stack  # noqa: E402
from napari_unetseg.core.training import train  # noqa: E402


def split(meta: dict) -> tuple[np.ndarray, np.ndarray]:
    """The 536/134 split listed in meta.json (RandomState(41) permutation, first 134 = test)."""
    return np.array(meta["split_suggestion"]["train"]), np.array(meta["split_suggestion"]["test"])


def iou_scores(pred: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    p, t = pred == 1, truth == 1
    inter = (p & t).sum((1, 2))
    union = (p | t).sum((1, 2))
    per_image = np.where(union > 0, inter / np.maximum(union, 1), 1.0)
    return float(per_image.mean()), float(inter.sum() / union.sum())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", nargs="+", default=["unet", "unetplusplus"])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--base", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    args = parser.parse_args()
    folder = DATA / "dsb2018_96"
    if not folder.is_dir():
        sys.exit(f"data not found: {folder}")
    images = tifffile.imread(folder / "images.tif")  # (670, 96, 96, 3)
    labels = tifffile.imread(folder / "labels.tif")
    meta = json.loads((folder / "meta.json").read_text())
    train_idx, test_idx = split(meta)
    x = np.moveaxis(images, -1, 1)  # (N, 3, 96, 96)
    results = {
        "hardware": hardware(),
        "steps": args.steps,
        "batch_size": args.batch_size,
        "base": args.base,
        "n_train": len(train_idx),
        "n_test": len(test_idx),
    }
    print(results["hardware"])
    for name in args.models:
        spec = ModelSpec(name=name, depth=4, base_channels=args.base)
        config = TrainConfig(
            label_mode="dense",
            steps=args.steps,
            patch_size=96,
            batch_size=args.batch_size,
            learning_rate=args.lr,
            steps_per_epoch=max(1, args.steps // 10),
            validation_fraction=0,
            advanced={"labelled_sampling": 0.0},
        )
        start = time.perf_counter()
        # each image is normalised on its own: one "stack" per image, as a user's files would be
        loaded = train(
            [x[i : i + 1] for i in train_idx], [labels[i : i + 1] for i in train_idx], spec, config
        ).loaded
        seconds = time.perf_counter() - start
        preds = np.concatenate(
            [
                predict_stack(loaded, x[i : i + 1], PredictConfig(tile_size=96, overlap=0)).labels
                for i in test_idx
            ]
        )
        mean_iou, pooled_iou = iou_scores(preds, labels[test_idx])
        results[name] = {
            "iou_mean_per_image": round(mean_iou, 4),
            "iou_pooled": round(pooled_iou, 4),
            "train_seconds": round(seconds, 1),
        }
        print(f"{name}: IoU {mean_iou:.4f} (pooled {pooled_iou:.4f}), trained in {seconds:.0f} s", flush=True)
    save_results(results, "dsb2018")


if __name__ == "__main__":
    main()

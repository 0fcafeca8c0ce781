"""What a trained ISBI scribble model gains after training (membrane Dice, test slices 24-29).

Takes a model file saved by ``isbi_sparse.py --save-models`` and reports
  * plain prediction and flip test-time augmentation (``--tta`` in the CLI);
  * a scan of fixed membrane-vs-interior logit offsets in place of the class-prior
    correction stored in the model (an oracle: chosen on the test slices);
  * with ``--round2-steps N``: one round of self-training, i.e. fine-tune N steps on the
    strokes plus the model's own confident labels (softmax >= ``--threshold``, with TTA)
    of the 3 training slices.

    python benchmarks/isbi_posthoc.py benchmarks/results/NAME_scribbles.pt [--round2-steps 200]
        [--set smoothness_weight=10]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np
import tifffile

sys.path.insert(0, str(Path(__file__).parent))
from common import DATA, hardware  # noqa: E402
from scribbles import draw_scribbles  # noqa: E402

from napari_unetseg.core.checkpoint import load_model  # noqa: E402
from napari_unetseg.core.config import PredictConfig, RunOptions, TrainConfig  # noqa: E402
from napari_unetseg.core.prediction import predict_stack  # noqa: E402
from napari_unetseg.core.training import train  # noqa: E402

TEST, SLICES = slice(24, 30), [2, 10, 18]


def membrane_dice(pred: np.ndarray, truth: np.ndarray) -> float:
    p, t = pred == 1, truth == 1
    return float(2 * (p & t).sum() / (p.sum() + t.sum()))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model", type=Path)
    parser.add_argument("--round2-steps", type=int, default=0)
    parser.add_argument("--threshold", type=float, default=0.9)
    parser.add_argument(
        "--set", nargs="*", default=[], metavar="KEY=VALUE", help="TrainConfig overrides, round 2"
    )
    args = parser.parse_args()
    folder = DATA / "isbi2012_em_membranes"
    if not folder.is_dir():
        sys.exit(f"data not found: {folder}")
    images, labels = tifffile.imread(folder / "images.tif"), tifffile.imread(folder / "labels.tif")
    test_images, truth = images[TEST][:, None], labels[TEST]
    loaded = load_model(args.model)
    print(hardware(), f"\n{args.model}: class-prior offsets {loaded.logit_bias}")

    for tta in (False, True):
        pred = predict_stack(loaded, test_images, PredictConfig(tile_size=512, tta=tta)).labels
        print(f"tta={tta}: membrane Dice {membrane_dice(pred, truth):.4f}", flush=True)

    # membrane (class value 1 = index 0) vs interior logit margin, without the stored correction
    plain = dataclasses.replace(loaded, logit_bias=())
    probs = predict_stack(plain, test_images, PredictConfig(tile_size=512), probabilities=True).probabilities
    margin = np.log(probs[:, 0] + 1e-9) - np.log(probs[:, 1] + 1e-9)
    scan = {off: membrane_dice(np.where(margin + off > 0, 1, 2), truth) for off in np.arange(-3, 0.75, 0.25)}
    print("fixed offsets:", " ".join(f"{off:+.2f}:{dice:.4f}" for off, dice in scan.items()))

    if args.round2_steps:
        rng = np.random.default_rng(0)  # the same strokes as isbi_sparse.py with --seed 0
        strokes = np.stack([draw_scribbles(labels[i], rng, 8, 80, 60) for i in SLICES])
        own = predict_stack(
            loaded, images[SLICES][:, None], PredictConfig(tile_size=512, tta=True), probabilities=True
        ).probabilities
        values = np.asarray(loaded.class_values, np.uint8)
        pseudo = np.where(own.max(1) >= args.threshold, values[own.argmax(1)], 0).astype(np.uint8)
        pseudo[strokes > 0] = strokes[strokes > 0]
        covered = pseudo > 0
        accuracy = ((pseudo == 1) == (labels[SLICES] == 1))[covered].mean()
        print(f"round 2 labels cover {covered.mean():.3f} of the 3 slices, accuracy {accuracy:.4f}")
        overrides = {k: json.loads(v) for k, v in (item.split("=", 1) for item in args.set)}
        config = TrainConfig.from_dict(  # from_dict: --set takes the keys of earlier versions too
            dict(
                label_mode="sparse",
                steps=args.round2_steps,
                patch_size=256,
                batch_size=4,
                seed=1,
                steps_per_epoch=args.round2_steps,
                validation_fraction=0,
                **overrides,
            )
        )
        start = time.perf_counter()
        second = train([images[SLICES][:, None]], [pseudo], None, config, RunOptions(init=args.model)).loaded
        seconds = time.perf_counter() - start
        for tta in (False, True):
            pred = predict_stack(second, test_images, PredictConfig(tile_size=512, tta=tta)).labels
            print(f"round 2, tta={tta}: membrane Dice {membrane_dice(pred, truth):.4f} ({seconds:.0f} s)")


if __name__ == "__main__":
    main()

"""Strokes against full masks against the random forest, on several kinds of data (issue 26).

For each set: a "user" paints simulated strokes (benchmarks/scribbles.py,
:func:`draw_class_strokes`: every class, <= 2 % of the pixels) on 3 training images; then

  sparse   `unetseg train` with its defaults on the strokes (draws x training seeds)
  dense    the same defaults on the full masks of the same 3 images (training seeds)
  forest   scikit-image's trainable segmentation (random forest on multiscale features:
           the ilastik recipe) on the same strokes (one per draw)

and scores each on the set's test images: Dice per class pooled over the images; the
score is the mean Dice of the classes after the first (the first is the background-like
class: background, or cell interior for EM).

    python benchmarks/scribbles_suite.py [--sets isbi dsb520 sbsst265 sbsst265-boundary]
        [--draws 0 1 2] [--seeds 0 1 2] [--arms sparse dense forest]
        [--set KEY=VALUE ...] [--spec KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile

sys.path.insert(0, str(Path(__file__).parent))
from common import DATA, hardware, random_forest, save_results  # noqa: E402
from scribbles import draw_class_strokes  # noqa: E402


@dataclass(frozen=True)
class Suite:
    """One set: its folder, the class names (index = class value), and how labels become classes."""

    folder: str
    names: tuple[str, ...]
    encoding: str  # "binary": label > 0; "membrane": label as is; "boundary": 3 classes


SETS = {
    "isbi": Suite("isbi2012_em_membranes", ("interior", "membrane"), "membrane"),
    "dsb520": Suite("dsb2018_fluo_520x696", ("background", "nucleus"), "binary"),
    "sbsst265": Suite("sbsst265_1024x1280", ("background", "nucleus"), "binary"),
    "sbsst265-boundary": Suite("sbsst265_1024x1280", ("background", "interior", "boundary"), "boundary"),
}
PAINTED = 3  # training images painted, evenly spaced through the training split
TESTED = 6  # test images scored, evenly spaced through the test split
BOUNDARY_WIDTH = 2  # px of each nucleus next to its edge (the background or another nucleus)


def classes_of(labels: np.ndarray, encoding: str) -> np.ndarray:
    """Class values 0..K-1 of a ``(N, Y, X)`` label stack."""
    if encoding == "membrane":
        return labels.astype(np.uint8)
    if encoding == "binary":
        return (labels > 0).astype(np.uint8)
    from scipy import ndimage
    from skimage.segmentation import find_boundaries

    out = (labels > 0).astype(np.uint8)
    for i, plane in enumerate(labels):
        edge = find_boundaries(plane, connectivity=1, mode="inner")
        near = ndimage.distance_transform_edt(~edge) < BOUNDARY_WIDTH
        out[i][(plane > 0) & near] = 2
    return out


def evenly(indices: list[int], count: int) -> list[int]:
    return [
        indices[i] for i in np.linspace(0, len(indices) - 1, min(count, len(indices))).round().astype(int)
    ]


def split_indices(suite: Suite) -> tuple[list[int], list[int]]:
    """The indices of the images a set's arms train on (painted) and are scored on."""
    if suite.folder.startswith("isbi"):
        return [2, 10, 18], list(range(24, 30))
    meta = json.loads((DATA / suite.folder / "meta.json").read_text())
    return evenly(meta["train_idx"], PAINTED), evenly(meta["test_idx"], TESTED)


def load_set(suite: Suite):
    """``(train images (3, 1, Y, X), train classes, test images, test classes)``."""
    path = DATA / suite.folder
    images, labels = tifffile.imread(path / "images.tif"), tifffile.imread(path / "labels.tif")
    train, test = split_indices(suite)
    return (
        images[train][:, None],
        classes_of(labels[train], suite.encoding),
        images[test][:, None],
        classes_of(labels[test], suite.encoding),
    )


def dice_per_class(pred: np.ndarray, truth: np.ndarray, count: int) -> list[float]:
    """Dice of each class 0..count-1, pooled over all images (``unetseg evaluate``'s figures)."""
    from napari_unetseg.core.metrics import evaluate

    result = evaluate(pred, truth, classes=list(range(count)), surface=False)
    return [result.per_class[c]["dice"] for c in range(count)]


def network_arm(images, labels, mode: str, names, seed: int, overrides: dict, spec: dict, init=None):
    """Train with the defaults (``overrides`` and ``spec`` aside; from ``init``: a model
    file, ``"auto"`` or ``None``, random weights); ``(model, minutes, what it started from)``."""
    from napari_unetseg.core.config import ModelSpec, RunOptions, TrainConfig
    from napari_unetseg.core.events import run_generator
    from napari_unetseg.core.training import make_trainer

    config = TrainConfig.from_dict({**TrainConfig().to_dict(), "label_mode": mode, "seed": seed, **overrides})
    start = time.perf_counter()
    model_spec = ModelSpec.from_dict({**ModelSpec().to_dict(), **spec}) if spec else ModelSpec()
    trainer = make_trainer([images], [labels], model_spec, config, RunOptions(init=init), list(names))
    result = run_generator(trainer.run())
    return result.loaded, (time.perf_counter() - start) / 60, trainer.start_note


def network_prediction(model, images: np.ndarray, mode: str) -> np.ndarray:
    """Class values 0..K-1 predicted for ``images`` (sparse models number them from 1)."""
    from napari_unetseg.core.config import PredictConfig
    from napari_unetseg.core.prediction import predict_stack

    labels = predict_stack(model, images, PredictConfig(device="cpu")).labels.astype(np.int64)
    return labels - 1 if mode == "sparse" else labels


def summary(rows: list[dict]) -> dict:
    """Mean, min and max score of each arm, and the ratios the issue asks for."""
    out = {}
    for arm in ("sparse", "dense", "forest"):
        scores = [r["score"] for r in rows if r["arm"] == arm]
        if scores:
            out[arm] = {"mean": round(float(np.mean(scores)), 4), "min": min(scores), "max": max(scores)}
    for a, b in (("sparse", "dense"), ("sparse", "forest"), ("dense", "forest")):
        if a in out and b in out:
            out[f"{a}/{b}"] = round(out[a]["mean"] / max(out[b]["mean"], 1e-9), 3)
    return out


def run_set(name: str, args: argparse.Namespace, overrides: dict, spec: dict) -> list[dict]:
    """Every arm, draw and seed ``args`` asks for on one set; one row per run."""
    suite = SETS[name]
    images, classes, test_images, truth = load_set(suite)
    rows: list[dict] = []

    def record(row: dict, pred: np.ndarray) -> None:
        per_class = dice_per_class(pred, truth, len(suite.names))
        row |= {
            "per_class": [round(d, 4) for d in per_class],
            "score": round(float(np.mean(per_class[1:])), 4),
        }
        rows.append(row)
        print(name, row, flush=True)

    if "dense" in args.arms:
        for seed in args.seeds:
            model, minutes, note = network_arm(images, classes, "dense", suite.names, seed, overrides, spec,
                                               args.init)  # fmt: skip
            record(
                {"arm": "dense", "seed": seed, "minutes": round(minutes, 2), "start": note},
                network_prediction(model, test_images, "dense"),
            )
    for draw in args.draws:
        rng = np.random.default_rng(1000 + draw)
        strokes = np.stack([draw_class_strokes(c, rng) for c in classes])
        painted = round(float((strokes > 0).mean()), 4)
        if "forest" in args.arms:
            pred, seconds = random_forest(images[:, 0], strokes, test_images[:, 0])
            minutes = round(seconds / 60, 2)
            record(
                {"arm": "forest", "draw": draw, "painted": painted, "minutes": minutes}, pred.astype(int) - 1
            )
        for seed in args.seeds if "sparse" in args.arms else []:
            model, minutes, note = network_arm(images, strokes, "sparse", suite.names, seed, overrides, spec,
                                               args.init)  # fmt: skip
            row = {
                "arm": "sparse",
                "draw": draw,
                "seed": seed,
                "painted": painted,
                "minutes": round(minutes, 2),
                "start": note,
            }
            record(row, network_prediction(model, test_images, "sparse"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sets", nargs="+", default=list(SETS), choices=list(SETS))
    parser.add_argument("--draws", type=int, nargs="+", default=[0, 1, 2], help="stroke draws")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds")
    parser.add_argument("--arms", nargs="+", default=["sparse", "dense", "forest"])
    parser.add_argument(
        "--set", nargs="*", default=[], metavar="KEY=VALUE", help="TrainConfig overrides (JSON values)"
    )
    parser.add_argument(
        "--spec", nargs="*", default=[], metavar="KEY=VALUE", help="ModelSpec overrides (JSON values)"
    )
    parser.add_argument("--init", help="what the networks start from: a model file, or auto (a starter "
                        "that fits the labels); default: random weights")  # fmt: skip
    parser.add_argument("--starters", nargs="+", type=Path, metavar="FILE",
                        help="with --init auto: judge these instead of the shipped starters")  # fmt: skip
    parser.add_argument("--keep-prior", action="store_true",
                        help="fine-tuning keeps the class-prior correction of sparse labels")  # fmt: skip
    parser.add_argument("--name", default="", help="suffix of the results file")
    args = parser.parse_args()
    if args.keep_prior:  # an experiment: the recipe of training_setup.fine_tuning_config but the prior
        from napari_unetseg.core import training, training_setup

        def keep_prior(config, base, resume):
            tuned = training_setup.fine_tuning_config(config, base, resume)
            prior = config.advanced.prior_correction
            return tuned.replace(advanced=tuned.advanced.replace(prior_correction=prior))

        training.fine_tuning_config = keep_prior
    if args.starters:
        from napari_unetseg.core import auto_start

        auto_start.CANDIDATES = args.starters
    overrides = {k: json.loads(v) for k, v in (item.split("=", 1) for item in args.set)}
    spec = {k: json.loads(v) for k, v in (item.split("=", 1) for item in args.spec)}
    results = {"hardware": hardware(), "overrides": overrides, "spec": spec, "init": args.init,
               "keep_prior": args.keep_prior,
               "starters": [str(p) for p in args.starters or []], "sets": {}}  # fmt: skip
    for name in args.sets:
        rows = run_set(name, args, overrides, spec)
        results["sets"][name] = {"runs": rows, "summary": summary(rows)}
        print(name, results["sets"][name]["summary"], flush=True)
        print(save_results(results, f"scribbles_suite{args.name}"), flush=True)


if __name__ == "__main__":
    main()

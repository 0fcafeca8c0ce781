"""Object mode against pixel-only methods on fluorescence nuclei with instance labels
(issue 23): object F1 at IoU 0.5 and AP over IoU 0.5:0.95 on a set's test split of

1. the connected components of a semantic U-Net's prediction (background / nucleus,
   trained on the dense masks of the same training images);
2. the connected components of the *true* foreground (the ceiling of any pixel-only
   method; no training);
3. the object mode (``TrainConfig(objects=True)``: background / interior / boundary, then
   the seeded watershed of core/instances.py), trained on the dense object labels of the
   same images;
4. the object mode from what a user paints on the same images (sparse labels): a share
   (``--painted``) of the objects of each image painted whole, and background strokes
   (one 30 px, 3 px wide stroke in each cell of a 3 x 3 grid, inside the background
   eroded by 4 px); everything else unpainted.

5. with ``--starter FILE`` (an object model, e.g. scripts/train_starters.py nuclei-objects
   --leave-out sbsst265), that model as it is (no training on the set); the dense and
   painted rows then fine-tune from it.

All networks use the defaults (U-Net, base 16, 128 px patches, batch 8) but the step
count; one run, one seed.

    python benchmarks/objects_mode.py [--set dsb2018_fluo_256x256] [--steps 500] [--train-images 64]
                                      [--painted 0.25] [--rows semantic ceiling dense painted]
                                      [--normalization JSON] [--advanced JSON] [--tta] [--contact-weight 10]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from scipy import ndimage
from skimage.measure import label as connected_components

sys.path.insert(0, str(Path(__file__).parent))
from common import RESULTS, hardware, object_set, save_results  # noqa: E402

from napari_unetseg.core import contacts, instances  # noqa: E402
from napari_unetseg.core.checkpoint import load_model, save_model  # noqa: E402
from napari_unetseg.core.config import (  # noqa: E402
    AdvancedOptions,
    ModelSpec,
    PredictConfig,
    RunOptions,
    TrainConfig,
)
from napari_unetseg.core.events import run_generator  # noqa: E402
from napari_unetseg.core.jobs import start_training  # noqa: E402
from napari_unetseg.core.normalization import Normalization  # noqa: E402
from napari_unetseg.core.object_sink import object_sink  # noqa: E402
from napari_unetseg.core.objects import evaluate_objects  # noqa: E402
from napari_unetseg.core.prediction import iter_predict  # noqa: E402
from napari_unetseg.core.sample import _stroke  # noqa: E402

ADVANCED: dict = {}  # the training options of every row (--advanced)


def painted_objects(objects: np.ndarray, share: float, rng) -> np.ndarray:
    """Sparse object labels as a user paints them (module text): 1 = background strokes,
    2, 3, ... = whole objects, 0 = unpainted."""
    labels = np.zeros(objects.shape, np.uint32)
    background = ndimage.binary_erosion(objects == 0, iterations=4)
    for rows in np.array_split(np.arange(objects.shape[0]), 3):
        for cols in np.array_split(np.arange(objects.shape[1]), 3):
            ys, xs = np.nonzero(background[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1])
            if len(ys):
                i = rng.integers(len(ys))
                line = _stroke(objects.shape, rng, rows[0] + ys[i], cols[0] + xs[i], 30)
                labels[line & background] = 1
    ids = np.unique(objects[objects > 0])
    chosen = rng.permutation(ids)[: max(1, round(share * len(ids)))] if len(ids) else []
    for new, old in enumerate(chosen, start=2):
        labels[objects == old] = new
    return labels


def train_and_predict(
    images,
    labels,
    test_images,
    steps: int,
    objects: bool,
    mode="dense",
    save=None,
    init=None,
    spec=None,
    seed=0,
):
    """Train on ``labels`` (from the model file ``init`` when given) and predict the test
    images: classes, or objects (as ``unetseg predict`` writes them) for an object model;
    and the training minutes. The model file goes to ``save`` (a path) when given."""
    config = TrainConfig(steps=steps, label_mode=mode, objects=objects, device="cpu", seed=seed,
                         advanced=AdvancedOptions(**ADVANCED))  # fmt: skip
    start = time.perf_counter()
    trainer = start_training([images[:, None]], [labels], spec or ModelSpec(), config, RunOptions(init=init))
    loaded = run_generator(trainer.run()).loaded
    minutes = (time.perf_counter() - start) / 60
    if save is not None:
        Path(save).parent.mkdir(parents=True, exist_ok=True)  # benchmarks/results/ on a fresh clone
        save_model(loaded, save)
    return predict_objects(loaded, test_images, objects), minutes


def predict_objects(loaded, test_images: np.ndarray, objects: bool = True, tta: bool = False) -> np.ndarray:
    """The test images' objects (or classes) as ``unetseg predict [--tta]`` writes them."""
    out = np.zeros(test_images.shape, np.uint32)
    sink = object_sink(loaded, out, len(out)) if objects else out
    run_generator(iter_predict([loaded], test_images[:, None], PredictConfig(tta=tta), labels_out=sink))
    return out


def score(found: np.ndarray, truth: np.ndarray):
    """Object scores of ``found`` against ``truth``, ``found`` zoomed back to its size first
    (nearest neighbour) when the network saw zoomed images (``--zoom``)."""
    if found.shape != truth.shape:
        found = ndimage.zoom(found, np.divide(truth.shape, found.shape), order=0)
    return evaluate_objects(found, truth)


def add_tta_row(rows: dict, name: str, model_file, test_images: np.ndarray, truth: np.ndarray) -> None:
    """Beside row ``name``, the same object model (saved in ``model_file``) scored with flip TTA."""
    found = predict_objects(load_model(model_file), test_images, tta=True)
    rows[f"{name}, flip TTA"] = (score(found, truth), rows[name][1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--set", default="dsb2018_fluo_256x256")
    parser.add_argument("--steps", type=int, default=TrainConfig.steps)
    parser.add_argument("--painted", type=float, default=0.25, help="share of the objects painted per image")
    parser.add_argument("--rows", nargs="+", default=["semantic", "ceiling", "dense", "painted"])
    parser.add_argument("--train-images", type=int, default=64, help="the first N of the training split")
    parser.add_argument("--starter", type=Path, help="an object model to score as it is (and fine-tune)")
    parser.add_argument("--name", default="", help="suffix of the results file")
    parser.add_argument(
        "--seed", type=int, default=0, help="training seed (the painted objects stay the same)"
    )
    parser.add_argument("--core", type=float, default=instances.CORE,
                        help="the interior's share of each object's depth (instances.CORE)")  # fmt: skip
    parser.add_argument("--contact-weight", type=int, default=contacts.CONTACT_WEIGHT,
                        help="extra weight where objects touch (CONTACT_WEIGHT; 0: none)")  # fmt: skip
    parser.add_argument("--tta", action="store_true",
                        help="also score the object models with flip TTA (extra rows)")  # fmt: skip
    parser.add_argument("--zoom", type=float, default=1.0,
                        help="train and predict on images zoomed so; objects zoomed back")  # fmt: skip
    parser.add_argument("--base-channels", type=int, default=ModelSpec.base_channels,
                        help="the U-Net's width (stop 46: 32)")  # fmt: skip
    parser.add_argument("--advanced", type=json.loads, default={},
                        help='training options, JSON (e.g. \'{"class_balance": true}\')')  # fmt: skip
    parser.add_argument("--normalization", type=json.loads, default={},
                        help='normalisation options, JSON (e.g. \'{"min_range": 0}\')')  # fmt: skip
    args = parser.parse_args()
    ADVANCED.update(args.advanced)  # every row's training options
    instances.CORE = args.core  # what every object label becomes while training
    contacts.CONTACT_WEIGHT = args.contact_weight  # ... and how much its contacts weigh
    normalization = Normalization.from_dict(args.normalization)
    spec = ModelSpec(normalization=normalization, base_channels=args.base_channels)
    images, objects, train, test = object_set(args.set, "objects_mode", args.train_images)
    truth = objects[test]
    if args.zoom != 1.0:  # the network sees zoomed images and labels; scores at the original size
        images = ndimage.zoom(images.astype(np.float32), (1, args.zoom, args.zoom), order=1)
        objects = ndimage.zoom(objects, (1, args.zoom, args.zoom), order=0)
    rows = {}
    origin = f", from {args.starter.stem}" if args.starter else ""  # rows fine-tuned from the starter
    if "semantic" in args.rows:
        foreground = (objects[train] > 0).astype(np.uint8)
        semantic, minutes = train_and_predict(images[train], foreground, images[test], args.steps, False,
                                              spec=spec, seed=args.seed)  # fmt: skip
        components = np.stack([connected_components(s > 0, connectivity=1) for s in semantic])
        rows["components of the semantic prediction"] = (score(components, truth), minutes)
    if "ceiling" in args.rows:
        ceiling = np.stack([connected_components(t > 0, connectivity=1) for t in truth])
        rows["components of the true foreground"] = (evaluate_objects(ceiling, truth), 0.0)
    if "dense" in args.rows:
        save = RESULTS / f"objects_mode_{args.set}_dense{args.name}.pt"
        pairs = (images[train], objects[train], images[test])
        found, minutes = train_and_predict(
            *pairs, args.steps, True, save=save, init=args.starter, spec=spec, seed=args.seed
        )
        rows[f"object mode, dense object labels{origin}"] = (score(found, truth), minutes)
        if args.tta:
            add_tta_row(rows, f"object mode, dense object labels{origin}", save, images[test], truth)
    if args.starter is not None:
        found = predict_objects(load_model(args.starter), images[test])
        name = f"object starter {args.starter.stem}, no training"
        rows[name] = (score(found, truth), 0.0)
        if args.tta:
            add_tta_row(rows, name, args.starter, images[test], truth)
    if "painted" in args.rows:
        rng = np.random.default_rng(0)
        painted = np.stack([painted_objects(o, args.painted, rng) for o in objects[train]])
        share = f"{100 * args.painted:.0f} % of the objects, {100 * (painted > 0).mean():.1f} % of the pixels"
        save = RESULTS / f"objects_mode_{args.set}_painted{args.name}.pt"
        found, minutes = train_and_predict(images[train], painted, images[test], args.steps, True, "sparse",
                                           save, args.starter, spec, args.seed)  # fmt: skip
        rows[f"object mode, painted ({share}){origin}"] = (score(found, truth), minutes)
        if args.tta:
            add_tta_row(rows, f"object mode, painted ({share}){origin}", save, images[test], truth)
    table = {
        name: {
            **evaluation.total(),
            "train_minutes": m,
            "fp_per_image": {i: s.fp for i, s in zip(test, evaluation.images)},
        }
        for name, (evaluation, m) in rows.items()
    }
    results = {"hardware": hardware(), "set": args.set, "normalization": spec.normalization.to_dict(),
               "steps": args.steps, "seed": args.seed, "core": args.core,
               "contact_weight": args.contact_weight, "advanced": args.advanced, "train_images": len(train),
               "test_images": len(test), "rows": table}  # fmt: skip
    path = save_results(results, f"objects_mode_{args.set}_{'_'.join(args.rows)}{args.name}")
    print(f"{args.set}: {len(train)} training images, {len(test)} test images, {args.steps} steps")
    print(
        "| method | objects (true / found) | merges | splits | F1@0.5 | AP@[0.5:0.95] | PQ | training min |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, (evaluation, minutes) in rows.items():
        t = evaluation.total()
        print(f"| {name} | {t['n_true']} / {t['n_pred']} | {t['merges']} | {t['splits']} | {t['f1']:.3f} "
              f"| {t['ap']:.3f} | {t['panoptic_quality']:.3f} | {minutes:.1f} |")  # fmt: skip
    for name, row in table.items():  # a few images can hold most of the false objects
        worst = sorted(row["fp_per_image"].items(), key=lambda item: -item[1])[:3]
        print(f"most false objects ({name}): " + ", ".join(f"image {i}: {fp}" for i, fp in worst))
    print(f"results in {path}")


if __name__ == "__main__":
    main()

"""Does the step from classes to objects matter? (issue 23) The seeded watershed of
core/instances.py on the predicted classes (argmax) against variants that use the class
probabilities, on one object model's predictions of a set's test split:

* seeds where p(interior) > t (t = 0.5 ... 0.8) instead of the argmax interior;
* seeds of at least N pixels; p(interior) smoothed first;
* the foreground where p(background) < 0.4 / 0.6;
* the watershed on -p(interior) instead of the distance to the seeds;
* each interior piece split at its necks: one seed per h-maximum of its distance to the
  edge (h = 1 ... 4 px; a piece without one stays one seed), stop 40;
* with ``--biases B ...`` (stop 42) only the product's step (the argmax, objects under the
  model's smallest size dropped) and the same after adding B to the interior's logit: a
  core taken only where the network is sure of it;
* with ``--oracles`` (stop 42) only the product's step and two halves of it from the truth:
  the true foreground cut by the predicted cores, and the predicted foreground cut by the
  true cores (``instance_classes`` of the true objects): which half the errors are in
  (pieces of foreground without a core kept as objects, as the product did before stop
  42); and the product's step both ways: such pieces kept, or dropped (since stop 42).

    python benchmarks/objects_postprocessing.py MODEL.pt [--set dsb2018_fluo_256x256] [--biases -0.5 -1]

(MODEL.pt: e.g. the dense object model benchmarks/objects_mode.py saves.) Every variant
drops objects under ``instances.MIN_SIZE`` pixels and joins seedless foreground 4-connected,
as the product does (before stop 40 the variants kept the small ones).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import tifffile
from scipy import ndimage
from skimage.measure import label as connected_components
from skimage.morphology import h_maxima
from skimage.segmentation import relabel_sequential, watershed

sys.path.insert(0, str(Path(__file__).parent))
from common import DATA, hardware, save_results  # noqa: E402

from napari_unetseg.core.checkpoint import load_model  # noqa: E402
from napari_unetseg.core.events import run_generator  # noqa: E402
from napari_unetseg.core.instances import (  # noqa: E402
    INTERIOR,
    MIN_SIZE,
    instance_classes,
    instances_from_classes,
    min_object_size,
)
from napari_unetseg.core.objects import evaluate_objects  # noqa: E402
from napari_unetseg.core.prediction import iter_predict  # noqa: E402

VARIANTS = {
    "p(interior) > 0.5": {},
    "p(interior) > 0.6": {"seed_at": 0.6},
    "p(interior) > 0.7": {"seed_at": 0.7},
    "p(interior) > 0.8": {"seed_at": 0.8},
    "seeds >= 10 px": {"min_seed": 10},
    "seeds >= 30 px": {"min_seed": 30},
    "p(interior) smoothed (sigma 1)": {"smooth": 1.0},
    "foreground p(background) < 0.4": {"foreground_at": 0.4},
    "foreground p(background) < 0.6": {"foreground_at": 0.6},
    "watershed on -p(interior)": {"surface": "probability"},
    "p(interior) > 0.7, foreground p(background) < 0.4": {"seed_at": 0.7, "foreground_at": 0.4},
    **{f"interior split at necks (h = {h} px)": {"neck": h} for h in (1, 2, 3, 4)},
}

SEED_SHARES = (0.1, 0.2, 0.3)  # stop 40
SEEDLESS = "argmax, foreground pieces without a core dropped (the product since stop 42)"
CONFIDENT_CORE = (0.6, 0.7)
AREA_SHARES = (0.02, 0.05, 0.1)  # Cellpose's min_size 15 px at its 30 px diameter: 2 % of an object


def confident_core(p: np.ndarray, at: float) -> np.ndarray:
    """The argmax classes of ``(3, Y, X)`` probabilities, the interior's pixels where
    p(interior) <= ``at`` taken as boundary (seeds only where the core is confident)."""
    classes = p.argmax(0)
    classes[(classes == 1) & (p[1] <= at)] = 2
    return classes


def split_at_necks(interior: np.ndarray, h: float) -> np.ndarray:
    """Seeds from an interior mask: one per h-maximum of each piece's distance to its edge
    (grown back over the piece), the whole piece where it has none."""
    depth = ndimage.distance_transform_edt(interior)
    seeds = connected_components(h_maxima(depth, h) > 0, connectivity=2)
    pieces = connected_components(interior, connectivity=1)
    lone = pieces * ~np.isin(pieces, np.unique(pieces[seeds > 0]))
    seeds[lone > 0] = lone[lone > 0] + seeds.max()
    return watershed(-depth, seeds, mask=interior)


def objects_from_probabilities(
    p, seed_at=0.5, foreground_at=0.5, min_seed=1, smooth=0.0, surface="distance", neck=0.0
):
    """Objects from ``(3, Y, X)`` probabilities of background, interior, boundary."""
    interior = ndimage.gaussian_filter(p[1], smooth) if smooth else p[1]
    foreground = p[0] < foreground_at
    if neck:
        seeds = split_at_necks(p.argmax(0) == 1, neck)
    else:
        seeds = connected_components(interior > seed_at, connectivity=1)
    if min_seed > 1 and seeds.max():
        sizes = np.bincount(seeds.ravel())
        small = np.flatnonzero(sizes < min_seed)
        seeds[np.isin(seeds, small[small > 0])] = 0
    height = ndimage.distance_transform_edt(seeds == 0) if surface == "distance" else -interior
    objects = watershed(height, seeds, mask=foreground)
    rest = connected_components(foreground & (objects == 0), connectivity=1)
    objects[rest > 0] = rest[rest > 0] + objects.max()
    small = np.flatnonzero(np.bincount(objects.ravel()) < MIN_SIZE)  # as the product drops them
    objects[np.isin(objects, small[small > 0])] = 0
    return relabel_sequential(objects)[0]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model")
    parser.add_argument("--set", default="dsb2018_fluo_256x256")
    parser.add_argument("--shares-only", action="store_true", help="only the argmax rows (stop 40)")
    parser.add_argument("--biases", type=float, nargs="+", help="only the interior logit bias rows (stop 42)")
    parser.add_argument("--oracles", action="store_true", help="only the rows with half from the truth")
    parser.add_argument("--no-prior", action="store_true", help="without the model's class-prior correction")
    args = parser.parse_args()
    folder = DATA / args.set
    meta = json.loads((folder / "meta.json").read_text())
    test = meta["test_idx"]
    labels = tifffile.imread(folder / "labels.tif")
    images, truth = tifffile.imread(folder / "images.tif")[test], labels[test]
    loaded = load_model(args.model)
    if args.no_prior:  # stop 42: the painted object models' correction lifts the background a lot
        loaded.logit_bias = ()
    order = [loaded.class_names.index(name) for name in ("background", "interior", "boundary")]
    result = run_generator(iter_predict([loaded], images[:, None], probabilities=True))
    probabilities = result.probabilities[:, order]
    areas = np.concatenate([np.bincount(t.ravel())[1:] for t in labels[meta["train_idx"]]])
    median = float(np.median(areas[areas > 0]))  # what a model trained on the split's objects would know
    min_size = min_object_size(loaded.object_size or median)  # the product's floor for this model
    if args.oracles:
        rows = oracle_rows(probabilities, truth, min_size)
    elif args.biases:
        rows = bias_rows(probabilities, min_size, args.biases)
    else:
        rows = other_rows(probabilities, median, args.shares_only)
    table = {}
    print(f"{args.set}: {len(test)} test images, model {args.model}")
    print("| objects from | found | merges | splits | F1@0.5 | AP@[0.5:0.95] | PQ |")
    print("|---|---|---|---|---|---|---|")
    for name, found in rows.items():
        t = evaluate_objects(np.stack(found), truth).total()
        table[name] = t
        cells = f"{t['n_pred']} | {t['merges']} | {t['splits']} | {t['f1']:.3f} | {t['ap']:.3f}"
        print(f"| {name} | {cells} | {t['panoptic_quality']:.3f} |")
    suffix = (
        "_shares" if args.shares_only else "_biases" if args.biases else "_oracles" if args.oracles else ""
    )
    name = f"objects_postprocessing_{args.set}_{Path(args.model).stem}{suffix}{'_noprior' * args.no_prior}"
    path = save_results({"hardware": hardware(), "set": args.set, "model": args.model, "rows": table}, name)
    print(f"results in {path}")


def bias_rows(probabilities: np.ndarray, min_size: int, biases: list[float]) -> dict[str, list]:
    """The product's objects (argmax, ``min_size``) and those after adding each bias to the
    interior's logit."""
    rows = {
        "argmax classes (the product)": [
            instances_from_classes(p.argmax(0), min_size=min_size) for p in probabilities
        ]
    }
    logp = np.log(np.clip(probabilities, 1e-12, 1))
    for b in biases:
        shift = np.array([0.0, b, 0.0]).reshape(3, 1, 1)
        found = [instances_from_classes((q + shift).argmax(0), min_size=min_size) for q in logp]
        rows[f"interior logit {b:+g}"] = found
    return rows


def oracle_rows(probabilities: np.ndarray, truth: np.ndarray, min_size: int) -> dict[str, list]:
    """The product's objects, and those of the true foreground with the predicted cores and
    of the predicted foreground with the true cores."""
    kept = "argmax classes, foreground pieces without a core kept (the product before stop 42)"
    rows: dict[str, list] = {kept: [], "true foreground, predicted cores": [],
                             "predicted foreground, true cores": [], SEEDLESS: []}  # fmt: skip
    for p, objects in zip(probabilities, truth):
        classes = p.argmax(0)
        true_core = instance_classes(objects) == INTERIOR
        mixed = {
            kept: classes,
            "true foreground, predicted cores": np.where(objects > 0, np.where(classes == 1, 1, 2), 0),
            "predicted foreground, true cores": np.where(classes > 0, np.where(true_core, 1, 2), 0),
        }
        for name, c in mixed.items():
            rows[name].append(instances_from_classes(c, min_size=min_size, seedless=True))
        rows[SEEDLESS].append(instances_from_classes(classes, min_size=min_size, seedless=False))
    return rows


def other_rows(probabilities: np.ndarray, median: float, shares_only: bool) -> dict[str, list]:
    """The rows of stops 33-40 (module text)."""
    rows = {"argmax classes (the product)": [instances_from_classes(p.argmax(0)) for p in probabilities]}
    for share in SEED_SHARES:  # the argmax, without the seeds much smaller than their neighbours
        name = f"argmax, seeds >= {share:.0%} of the largest in their foreground piece"
        rows[name] = [instances_from_classes(p.argmax(0), seed_share=share) for p in probabilities]
    for at in CONFIDENT_CORE:
        name = f"argmax (seeds >= 10 %), core only where p(interior) > {at}"
        rows[name] = [instances_from_classes(confident_core(p, at)) for p in probabilities]
    for share in AREA_SHARES:
        name = f"argmax, objects under {share:.0%} of the training objects' median ({median:.0f} px) dropped"
        size = max(MIN_SIZE, round(share * median))
        rows[name] = [instances_from_classes(p.argmax(0), min_size=size) for p in probabilities]
    for name, options in {} if shares_only else VARIANTS.items():
        rows[name] = [objects_from_probabilities(p, **options) for p in probabilities]
    return rows


if __name__ == "__main__":
    main()

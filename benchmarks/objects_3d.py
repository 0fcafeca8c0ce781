"""3D objects on gonuclear_mini3d (issue 23): a first figure, not a benchmark (two 100^3
crops of confocal nuclei, one to train on, one to test; 54 and 32 nuclei).

Object F1 at IoU 0.5 and AP over IoU 0.5:0.95 in 3D on the test crop of

1. the 3D connected components of the true foreground (the ceiling of any pixel-only method);
2. the 3D connected components of a semantic 3D U-Net's prediction (background / nucleus);
3. the object mode with a 3D U-Net (``unet3d``: background / core / rim in 3D, then the 3D
   seeded watershed), from the dense object labels of the training crop;
4. the 3D connected components of a semantic 2D U-Net's prediction, slice by slice;
5. the object mode with a 2D U-Net trained on the crop's slices, its slices' classes joined
   into 3D objects (``unetseg predict --objects-3d``: one 3D seeded watershed);
6. with ``--rows starter`` (stop 42), the 2D object starter (``--starter``, by default
   ``starter:nuclei-objects``, trained on DSB2018's 2D nuclei) as it is and fine-tuned on the
   training crop's slices (the fine-tuning recipe), its slices' objects joined in 3D.

The 3D networks: ``unet3d`` defaults, anisotropy from the voxel size, 64 px x 16 slice
patches, batch 2; the 2D ones: ``unet`` defaults, 96 px patches (the crop is 100 px
wide), batch 8. One run, one seed.

    python benchmarks/objects_3d.py [--steps 500] [--rows 3d 2d starter] [--from-saved]

The objects of every row go beside the results file (``.npz``, one array per row);
``--from-saved`` scores those again instead of training; with ``--min-span N`` (stop 46)
also each row's objects that span fewer than N slices dropped (a lead for the 2D model's
objects joined in 3D, measured on this one crop only). Under the table, for each row:
the median size of the missed nuclei (against all nuclei: most are cut by the crop) and
how many found objects overlap no nucleus at all (debris), with their sizes.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import tifffile
from scipy import ndimage
from skimage.measure import label as connected_components

sys.path.insert(0, str(Path(__file__).parent))
from common import DATA, RESULTS, hardware, save_results  # noqa: E402

from napari_unetseg.core.checkpoint import load_model  # noqa: E402
from napari_unetseg.core.config import ModelSpec, PredictConfig, RunOptions, TrainConfig  # noqa: E402
from napari_unetseg.core.events import run_generator  # noqa: E402
from napari_unetseg.core.instances import median_object_size, min_object_size  # noqa: E402
from napari_unetseg.core.jobs import start_training  # noqa: E402
from napari_unetseg.core.object_sink import object_sink  # noqa: E402
from napari_unetseg.core.objects import evaluate_objects, match, overlaps  # noqa: E402
from napari_unetseg.core.prediction import iter_predict  # noqa: E402


def train_and_predict(image, labels, test, steps: int, objects: bool, anisotropy: float | None, init=None):
    """Train on one crop (from the model file ``init`` when given), predict the other
    (``anisotropy`` None: a 2D U-Net on the slices, its objects joined in 3D)."""
    if anisotropy is None:
        spec = ModelSpec()
        config = TrainConfig(steps=steps, label_mode="dense", objects=objects, patch_size=96, device="cpu")
    else:
        spec = ModelSpec("unet3d", anisotropy=anisotropy)
        config = TrainConfig(steps=steps, label_mode="dense", objects=objects, patch_size=64, patch_depth=16,
                             batch_size=2, device="cpu")  # fmt: skip
    start = time.perf_counter()
    trainer = start_training([image[:, None]], [labels], spec, config, RunOptions(init=init))
    loaded = run_generator(trainer.run()).loaded
    minutes = (time.perf_counter() - start) / 60
    return predict(loaded, test, objects), minutes


def predict(loaded, test, objects: bool = True) -> np.ndarray:
    """A model's classes of the test crop, or its objects (a 2D model's joined in 3D)."""
    out = np.zeros(test.shape, np.uint32)
    sink = object_sink(loaded, out, len(out), volume=True) if objects else out
    run_generator(iter_predict([loaded], test[:, None], PredictConfig(device="cpu"), labels_out=sink))
    return out


def where_errors_are(found: np.ndarray, truth: np.ndarray) -> str:
    """The sizes of the missed nuclei against all, and the found objects apart from every nucleus."""
    pairs, _ = match(overlaps(truth, found), 0.5)
    true_ids, found_ids = np.unique(truth[truth > 0]), np.unique(found[found > 0])
    size = np.bincount(truth.ravel())[true_ids]
    missed = size[np.setdiff1d(np.arange(len(true_ids)), pairs[:, 0])]
    touched = set(np.unique(found[truth > 0]).tolist())
    found_size = np.bincount(found.ravel())
    apart = [int(found_size[j]) for j in found_ids if int(j) not in touched]
    return (f"{len(missed)} missed (median {np.median(missed) if len(missed) else 0:.0f} voxels; all nuclei "
            f"{np.median(size):.0f}); {len(apart)} found objects overlap no nucleus"
            + (f", of {min(apart)}-{max(apart)} voxels" if apart else ""))  # fmt: skip


def spanning(objects: np.ndarray, slices: int) -> np.ndarray:
    """``objects`` without those that span fewer than ``slices`` slices (the first axis)."""
    boxes = ndimage.find_objects(objects)
    short = [i + 1 for i, box in enumerate(boxes) if box is not None and box[0].stop - box[0].start < slices]
    return np.where(np.isin(objects, short), 0, objects)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=TrainConfig.steps)
    parser.add_argument("--rows", nargs="+", default=["3d", "2d"], help="3d: the 3D U-Nets, 2d: the 2D ones")
    parser.add_argument("--from-saved", action="store_true", help="score the saved objects of these rows")
    parser.add_argument(
        "--starter", default="starter:nuclei-objects", help="the 2D object model of --rows starter"
    )
    parser.add_argument("--min-span", type=int, default=0, help="with --from-saved: also drop objects "
                        "spanning fewer slices")  # fmt: skip
    args = parser.parse_args()
    folder = DATA / "gonuclear_mini3d"
    if not folder.exists():
        sys.exit(f"objects_3d: {folder} not found (set UNETSEG_DATA)")
    meta = json.loads((folder / "meta.json").read_text())
    images, labels = tifffile.imread(folder / "images.tif"), tifffile.imread(folder / "labels.tif")
    (train,), (test,) = meta["train_idx"], meta["test_idx"]
    z, y, _ = meta["voxel_size_um_zyx"][train]
    truth = labels[test]
    rows = {"3D components of the true foreground": (connected_components(truth > 0), 0.0)}
    mask = (labels[train] > 0).astype(np.uint8)
    saved = RESULTS / f"objects_3d_{'_'.join(args.rows)}"
    if args.from_saved:
        minutes = json.loads(saved.with_suffix(".json").read_text())["rows"]
        with np.load(saved.with_suffix(".npz")) as objects:
            rows = {name: (objects[name], minutes[name]["train_minutes"]) for name in objects.files}
        if args.min_span > 1:
            rows.update({f"{name}, spanning {args.min_span}+ slices": (spanning(found, args.min_span), m)
                         for name, (found, m) in list(rows.items())})  # fmt: skip
    for dims, anisotropy in (("3D", z / y), ("2D", None)):
        if args.from_saved or dims.lower() not in args.rows:
            continue
        semantic, minutes = train_and_predict(images[train], mask, images[test], args.steps, False,
                                              anisotropy)  # fmt: skip
        rows[f"3D components of the semantic {dims} U-Net"] = (connected_components(semantic > 0), minutes)
        joined = ", its slices' objects joined in 3D" if anisotropy is None else ""
        rows[f"object mode, {dims} U-Net{joined}"] = train_and_predict(
            images[train], labels[train], images[test], args.steps, True, anisotropy
        )
    if "starter" in args.rows and not args.from_saved:
        name = Path(args.starter.split(":")[-1]).stem
        rows[f"2D object starter {name}, no training, joined in 3D"] = (
            predict(load_model(args.starter), images[test]),
            0.0,
        )
        rows[f"2D object starter {name} fine-tuned on the slices, joined in 3D"] = train_and_predict(
            images[train], labels[train], images[test], args.steps, True, None, init=args.starter
        )
    table = {}
    print(f"gonuclear_mini3d: train crop {train}, test crop {test} ({len(np.unique(truth)) - 1} nuclei), "
          f"{args.steps} steps")  # fmt: skip
    print("| method | objects (true / found) | merges | splits | F1@0.5 | AP@[0.5:0.95] | training min |")
    print("|---|---|---|---|---|---|---|")
    for name, (found, minutes) in rows.items():
        t = evaluate_objects(found, truth, volume=True).total()
        table[name] = {**t, "train_minutes": minutes}
        print(f"| {name} | {t['n_true']} / {t['n_pred']} | {t['merges']} | {t['splits']} | {t['f1']:.3f} "
              f"| {t['ap']:.3f} | {minutes:.1f} |")  # fmt: skip
    for name, (found, _) in rows.items():
        print(f"{name}: {where_errors_are(found, truth)}")
    median = median_object_size([labels[train]], "dense", volume=True)
    print(f"training crop: median nucleus {median:.0f} voxels; a 3D object model drops objects under "
          f"{min_object_size(median)}")  # fmt: skip
    if args.from_saved:
        return
    results = {"hardware": hardware(), "steps": args.steps, "rows": table}
    path = save_results(results, saved.name)
    np.savez_compressed(path.with_suffix(".npz"), **{name: found for name, (found, _) in rows.items()})
    print(f"results in {path}")


if __name__ == "__main__":
    main()

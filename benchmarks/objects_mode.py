"""Object mode against pixel-only methods on fluorescence nuclei with instance labels
(issue 23): object F1 at IoU 0.5 and AP over IoU 0.5:0.95 on a set's test split of

1. the connected components of a semantic U-Net's prediction (background / nucleus,
   trained on the dense masks of the same training images);
2. the connected components of the *true* foreground (the ceiling of any pixel-only
   method; no training);
3. the object mode (``TrainConfig(objects=True)``: background / interior / boundary, then
   the seeded watershed of core/instances.py), trained on the same images.

Both networks use the defaults (U-Net, base 16, 128 px patches, batch 8) but the step
count; one run, one seed.

    python benchmarks/objects_mode.py [--set dsb2018_fluo_256x256] [--steps 300] [--train-images 64]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import tifffile
from skimage.measure import label as connected_components

sys.path.insert(0, str(Path(__file__).parent))
from common import DATA, hardware, save_results  # noqa: E402

from napari_unetseg.core.config import ModelSpec, RunOptions, TrainConfig  # noqa: E402
from napari_unetseg.core.events import run_generator  # noqa: E402
from napari_unetseg.core.instances import instances_from_classes  # noqa: E402
from napari_unetseg.core.jobs import start_training  # noqa: E402
from napari_unetseg.core.objects import evaluate_objects  # noqa: E402
from napari_unetseg.core.prediction import iter_predict  # noqa: E402


def split(meta: dict, key: str) -> list[int]:
    value = meta[key]
    return value if isinstance(value, list) else json.loads(value)


def train_and_predict(images, labels, test_images, steps: int, objects: bool) -> tuple[np.ndarray, float]:
    config = TrainConfig(steps=steps, label_mode="dense", objects=objects, device="cpu")
    start = time.perf_counter()
    trainer = start_training([images[:, None]], [labels], ModelSpec(), config, RunOptions())
    result = run_generator(trainer.run())
    minutes = (time.perf_counter() - start) / 60
    predicted = run_generator(iter_predict([result.loaded], test_images[:, None])).labels
    return predicted, minutes


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--set", default="dsb2018_fluo_256x256")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--train-images", type=int, default=64, help="the first N of the training split")
    args = parser.parse_args()
    folder = DATA / args.set
    if not folder.exists():
        sys.exit(f"objects_mode: {folder} not found (set UNETSEG_DATA)")
    meta = json.loads((folder / "meta.json").read_text())
    images, objects = tifffile.imread(folder / "images.tif"), tifffile.imread(folder / "labels.tif")
    train, test = split(meta, "train_idx")[: args.train_images], split(meta, "test_idx")
    truth = objects[test]
    rows = {}
    semantic, minutes = train_and_predict(images[train], (objects[train] > 0).astype(np.uint8), images[test],
                                          args.steps, objects=False)  # fmt: skip
    components = np.stack([connected_components(s > 0, connectivity=1) for s in semantic])
    rows["components of the semantic prediction"] = (evaluate_objects(components, truth), minutes)
    ceiling = np.stack([connected_components(t > 0, connectivity=1) for t in truth])
    rows["components of the true foreground"] = (evaluate_objects(ceiling, truth), 0.0)
    classes, minutes = train_and_predict(
        images[train], objects[train], images[test], args.steps, objects=True
    )
    found = np.stack([instances_from_classes(c) for c in classes])
    rows["object mode"] = (evaluate_objects(found, truth), minutes)
    table = {name: {**evaluation.total(), "train_minutes": m} for name, (evaluation, m) in rows.items()}
    results = {"hardware": hardware(), "set": args.set, "steps": args.steps, "train_images": len(train),
               "test_images": len(test), "rows": table}  # fmt: skip
    path = save_results(results, f"objects_mode_{args.set}")
    print(f"{args.set}: {len(train)} training images, {len(test)} test images, {args.steps} steps")
    print(
        "| method | objects (true / found) | merges | splits | F1@0.5 | AP@[0.5:0.95] | PQ | training min |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, (evaluation, minutes) in rows.items():
        t = evaluation.total()
        print(f"| {name} | {t['n_true']} / {t['n_pred']} | {t['merges']} | {t['splits']} | {t['f1']:.3f} "
              f"| {t['ap']:.3f} | {t['panoptic_quality']:.3f} | {minutes:.1f} |")  # fmt: skip
    print(f"results in {path}")


if __name__ == "__main__":
    main()

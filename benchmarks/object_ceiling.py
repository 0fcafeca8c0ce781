"""The ceiling of any pixel-only method on touching nuclei: object scores of the connected
components of the *true* foreground (issue 23, reference (2)); beside it, the ceiling of the
three-class encoding of core/instances.py (background / interior / 2 px boundary made from
the true objects, then turned back into objects by its seeded watershed).

A semantic prediction can at best equal the true foreground mask; its connected components
then still merge every group of touching nuclei. This scores those components against the
instance labels, image by image, on the test split of each set (``meta.json``), with
:func:`napari_unetseg.core.objects.object_scores`: F1 at IoU 0.5, the DSB2018 AP averaged
over IoU 0.5:0.95, panoptic quality, and merges. Figures are the mean over test images.

    python benchmarks/object_ceiling.py [--sets sbsst265_1024x1280 dsb2018_fluo_520x696 ...]
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

from napari_unetseg.core.instances import instance_classes, instances_from_classes  # noqa: E402
from napari_unetseg.core.objects import object_scores  # noqa: E402

SETS = ("sbsst265_1024x1280", "dsb2018_fluo_256x256", "dsb2018_fluo_360x360", "dsb2018_fluo_520x696")


def score_set(name: str) -> dict:
    folder = DATA / name
    if not folder.exists():
        sys.exit(f"object_ceiling: {folder} not found (set UNETSEG_DATA)")
    meta = json.loads((folder / "meta.json").read_text())
    test = meta["test_idx"] if isinstance(meta["test_idx"], list) else json.loads(meta["test_idx"])
    labels = tifffile.imread(folder / "labels.tif")
    rows, encoded = [], []
    for index in test:
        truth = np.asarray(labels[index])
        rows.append(object_scores(truth, connected_components(truth > 0, connectivity=1)))
        encoded.append(object_scores(truth, instances_from_classes(instance_classes(truth))))
    keys = ("f1", "ap", "panoptic_quality")
    mean = {key: float(np.nanmean([getattr(r, key) for r in rows])) for key in keys}
    return {
        "set": name,
        "test_images": len(rows),
        "true_objects": int(sum(r.n_true for r in rows)),
        "components": int(sum(r.n_pred for r in rows)),
        "merges": int(sum(r.merges for r in rows)),
        **mean,
        "encoded": {key: float(np.nanmean([getattr(r, key) for r in encoded])) for key in keys},
        "encoded_objects": int(sum(r.n_pred for r in encoded)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sets", nargs="+", default=list(SETS))
    args = parser.parse_args()
    start = time.perf_counter()
    results = [score_set(name) for name in args.sets]
    path = save_results({"hardware": hardware(), "sets": results}, "object_ceiling")
    print("| set | test images | true nuclei | components | merges | F1@0.5 | AP@[0.5:0.95] | PQ |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['set']} | {r['test_images']} | {r['true_objects']} | {r['components']} | {r['merges']} "
            f"| {r['f1']:.3f} | {r['ap']:.3f} | {r['panoptic_quality']:.3f} |"
        )
    print("\nthree classes of the true objects, back to objects (core/instances.py):")
    print("| set | objects | F1@0.5 | AP@[0.5:0.95] | PQ |")
    print("|---|---|---|---|---|")
    for r in results:
        e = r["encoded"]
        scores = f"{e['f1']:.3f} | {e['ap']:.3f} | {e['panoptic_quality']:.3f}"
        print(f"| {r['set']} | {r['encoded_objects']} | {scores} |")
    print(f"{time.perf_counter() - start:.0f} s; results in {path}")


if __name__ == "__main__":
    main()

"""Where the normalisation's floor under its range acts (``Normalization.min_range``).

For every image of the shared sets (2D sets image by image, as a 2D model scales them; the
3D crops volume by volume), the high value with the floor against the plain 99th
percentile: how many images it changes, by how much (the factor on the range), and what
those images hold (objects, and the share of the pixels they cover). Also whether it
changes any image the scribbles suite (benchmarks/scribbles_suite.py) trains or tests on.
Exact computation, no training.

    python benchmarks/normalisation_floor.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import tifffile

sys.path.insert(0, str(Path(__file__).parent))
from common import DATA, hardware, save_results  # noqa: E402
from scribbles_suite import SETS, split_indices  # noqa: E402

from napari_unetseg.core.normalization import Normalization  # noqa: E402

STACKS = [
    "dsb2018_fluo_256x256",
    "dsb2018_fluo_360x360",
    "dsb2018_fluo_520x696",
    "sbsst265_1024x1280",
    "isbi2012_em_membranes",
    "stardist_dsb2018_single",
]
FOLDERS = ["dsb2018_fluo_mixed", "sbsst265_mixed"]  # one file per image
VOLUMES = ["gonuclear_mini3d", "cells3d_nuclei_pseudolabels"]


def images_of(name: str):
    """``(index, image, labels)`` of every 2D image or 3D volume of a set."""
    folder = DATA / name
    if name in FOLDERS:
        for i, path in enumerate(sorted((folder / "images").glob("*.tif"))):
            image, labels = tifffile.imread(path), tifffile.imread(folder / "labels" / path.name)
            yield i, image.reshape(-1, *image.shape[-2:])[0], labels.reshape(-1, *labels.shape[-2:])[0]
        return
    images, labels = tifffile.imread(folder / "images.tif"), tifffile.imread(folder / "labels.tif")
    if name in VOLUMES:
        images, labels = images.reshape(-1, *images.shape[-3:]), labels.reshape(-1, *labels.shape[-3:])
    for i, (image, label) in enumerate(zip(images, labels)):
        yield i, image, label


def range_factor(image: np.ndarray, recipe: Normalization) -> float:
    """How much the floor widens the range of ``image`` (1.0: it does not act)."""
    plain = Normalization(recipe.low, recipe.high, min_range=0.0)
    stack = image[None, None] if image.ndim == 2 else image[:, None]
    (lo, hi), (_, floored) = plain.percentiles(stack), recipe.percentiles(stack)
    return float((floored[0] - lo[0]) / max(hi[0] - lo[0], 1e-6))


def main() -> None:
    recipe = Normalization()
    factors: dict[str, list[float]] = {}  # set -> the range factor of each image
    rows, changed_total = {}, 0
    for name in STACKS + FOLDERS + VOLUMES:
        if not (DATA / name).exists():
            continue
        factors[name], changed = [], []
        for i, image, labels in images_of(name):
            factor = range_factor(np.asarray(image), recipe)
            factors[name].append(factor)
            if factor > 1.0 + 1e-6:
                objects, cover = len(np.unique(labels[labels > 0])), float((labels > 0).mean())
                changed.append({"index": i, "factor": factor, "objects": objects, "covered": cover})
        changed_total += len(changed)
        rows[name] = changed
        listed = ", ".join(
            f"#{c['index']} x{c['factor']:.2f} ({c['objects']} objects, {100 * c['covered']:.2f} % of pixels)"
            for c in changed
        )
        print(f"{name}: {len(changed)} image(s) changed{': ' + listed if listed else ''}")
    suite = {}
    for key, entry in SETS.items():
        if entry.folder not in factors:
            continue
        used = sorted(set().union(*split_indices(entry)))
        suite[key] = [i for i in used if factors[entry.folder][i] > 1.0 + 1e-6]
        print(f"scribbles suite {key}: {len(used)} images used, changed: {suite[key] or 'none'}")
    total = sum(len(f) for f in factors.values())
    print(f"{changed_total} of {total} images or volumes changed (min_range {recipe.min_range})")
    results = {"hardware": hardware(), "min_range": recipe.min_range, "changed": rows, "total": total,
               "changed_total": changed_total, "suite_changed": suite}  # fmt: skip
    print(f"results in {save_results(results, 'normalisation_floor')}")


if __name__ == "__main__":
    main()

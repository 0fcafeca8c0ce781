"""Train the starter models shipped in the package (src/napari_unetseg/starters/).

    python scripts/train_starters.py nuclei em-membranes            # the shipped starters
    python scripts/train_starters.py nuclei --leave-out sbsst265     # a variant that has not seen a set
    python scripts/train_starters.py em-membranes --leave-out painted # nor the slices a benchmark paints
    python scripts/train_starters.py em-membranes --leave-out suite-painted  # nor the slices the suite paints
    python scripts/train_starters.py --list                          # the recipes
    python scripts/train_starters.py nuclei-objects --leave-out sbsst265 \
        --record-sizes src/napari_unetseg/starters/nuclei-objects.pt  # its objects' sizes, no training

Each starter is a U-Net with the CLI's defaults (base 16, depth 4), trained on dense masks
of the training splits in ../shared/data with the classes a user paints (1 = background,
2 = the object class), flips/rot90s, contrast jitter and a random zoom of 0.5-2x (objects
seen at many sizes), then saved in half precision (model files load it back as float32)
with its model card. ``--leave-out SET`` trains the same recipe without one set, for
measuring transfer to it (benchmarks/starters_transfer.py); ``--leave-out painted`` keeps
the sets but leaves out the first PAINTED training images of each stack, the ones that
benchmark paints (for EM, which has one stack only), ``--leave-out suite-painted`` the ISBI
slices benchmarks/scribbles_suite.py paints; ``--out`` writes elsewhere.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("UNETSEG_DATA", ROOT.parent / "shared" / "data"))
STARTERS = ROOT / "src" / "napari_unetseg" / "starters"


@dataclass(frozen=True)
class Recipe:
    """A starter: its data sets (folder -> how labels become classes), classes, steps, text."""

    sets: tuple[str, ...]
    classes: tuple[str, ...]
    steps: int
    description: str
    objects: bool = False  # learn objects (instance ids) rather than classes


RECIPES = {
    "nuclei": Recipe(
        ("dsb2018_fluo_256x256", "dsb2018_fluo_360x360", "dsb2018_fluo_520x696", "dsb2018_fluo_mixed",
         "sbsst265_1024x1280", "sbsst265_mixed"),
        ("background", "nucleus"), 2000,
        "fluorescence nuclei (DAPI/Hoechst), 2D, many cell types and magnifications",
    ),
    "nuclei-objects": Recipe(
        ("dsb2018_fluo_256x256", "dsb2018_fluo_360x360", "dsb2018_fluo_520x696", "dsb2018_fluo_mixed",
         "sbsst265_1024x1280", "sbsst265_mixed"),
        (), 4000,
        "fluorescence nuclei as objects (touching nuclei kept apart), 2D, many cell types and magnifications",
        objects=True,
    ),
    "em-membranes": Recipe(
        ("isbi2012_em_membranes",), ("interior", "membrane"), 2000,
        "cell membranes in serial-section electron microscopy, 2D",
    ),
}  # fmt: skip
FAMILIES = {"dsb2018": "dsb2018_fluo_", "sbsst265": "sbsst265_", "isbi": "isbi2012"}
PAINTED = 3  # benchmarks/starters_transfer.py paints the first 3 training images of a set
SUITE_PAINTED = [2, 10, 18]  # the ISBI slices benchmarks/scribbles_suite.py paints


def training_pairs(
    folder: str, split: str = "train", objects: bool = False
) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(image (N, 1, Y, X), classes (N, Y, X))`` stacks of one data set's split: labels
    become 1 (background, or cell interior for EM) and 2 (object, or membrane); with
    ``objects``, the sets' own instance ids (0 = background)."""
    path = DATA / folder

    def classes(labels: np.ndarray) -> np.ndarray:
        return labels.astype(np.uint32) if objects else (labels > 0).astype(np.uint8) + 1

    meta = json.loads((path / "meta.json").read_text())
    if folder.startswith("isbi"):
        images, labels = tifffile.imread(path / "images.tif"), tifffile.imread(path / "labels.tif")
        chosen = list(range(24)) if split == "train" else list(range(24, 30))
        return [(images[chosen][:, None], labels[chosen].astype(np.uint8) + 1)]
    if (path / "images.tif").exists():
        images, labels = tifffile.imread(path / "images.tif"), tifffile.imread(path / "labels.tif")
        chosen = meta[f"{split}_idx"]
        return [(images[chosen][:, None], classes(labels[chosen]))]
    pairs = []
    for name, part in sorted(meta["split"].items()):
        if part == split:
            image = tifffile.imread(path / "images" / f"{name}.tif")
            label = tifffile.imread(path / "labels" / f"{name}.tif")
            image = image if image.ndim == 2 else image[..., 0]
            pairs.append((image[None, None], classes(label[None])))
    return pairs


def training_data(name: str, leave_out: str | None = None):
    """A starter's data sets (without the family ``leave_out``), images and labels."""
    recipe = RECIPES[name]
    family = FAMILIES.get(leave_out or "", "\0")
    sets = [s for s in recipe.sets if not s.startswith(family)]
    pairs = []
    for folder in sets:
        for image, labels in training_pairs(folder, objects=recipe.objects):
            if leave_out == "suite-painted" and folder.startswith("isbi"):  # training slices 0-23
                image, labels = np.delete(image, SUITE_PAINTED, 0), np.delete(labels, SUITE_PAINTED, 0)
            pairs.append((image, labels))
    if leave_out == "painted":
        pairs = [(image[PAINTED:], labels[PAINTED:]) for image, labels in pairs if len(image) > PAINTED]
    return sets, [p[0] for p in pairs], [p[1] for p in pairs]


def record_sizes(name: str, leave_out: str | None, target: Path) -> Path:
    """Write into an object starter's model file the sizes of the objects it was trained on
    (``object_size``, ``object_depths``: what training records today; the shipped
    nuclei-objects starter was saved before they were), from the same training labels.
    The weights stay as they are."""
    from napari_unetseg.core.checkpoint import load_torch_safely, save_torch_atomic
    from napari_unetseg.core.instances import median_object_size
    from napari_unetseg.core.object_scale import depth_range

    _, _, labels = training_data(name, leave_out)
    payload = load_torch_safely(target)
    payload["object_size"] = median_object_size(labels, "dense")
    payload["object_depths"] = list(depth_range(labels, "dense"))
    save_torch_atomic(payload, target)
    print(f"{target}: object_size {payload['object_size']}, object_depths {payload['object_depths']}")
    return target


def train_starter(name: str, leave_out: str | None = None, out: Path | None = None, steps: int | None = None):
    """Train one starter (without the sets of family ``leave_out``); returns its model file."""
    from napari_unetseg.core.checkpoint import save_model
    from napari_unetseg.core.config import AdvancedOptions, ModelSpec, TrainConfig
    from napari_unetseg.core.normalization import Normalization
    from napari_unetseg.core.training import train

    recipe = RECIPES[name]
    sets, images, labels = training_data(name, leave_out)
    config = TrainConfig(
        label_mode="dense", steps=steps or recipe.steps, patch_size=128, batch_size=8, seed=0,
        validation_fraction=0.0, advanced=AdvancedOptions(zoom=2.0), objects=recipe.objects,
    )  # fmt: skip
    start = time.perf_counter()
    # the shipped starters' recipe (their cards): trained before the min_range floor
    spec = ModelSpec(normalization=Normalization(high=99.8, min_range=0.0))
    result = train(images, labels, spec, config, class_names=list(recipe.classes) or None)
    minutes = (time.perf_counter() - start) / 60
    loaded = result.loaded
    loaded.model.half()  # half the bytes in the wheel; load_state_dict casts back to float32
    suffix = f"-without-{leave_out}" if leave_out else ""
    target = (out or STARTERS) / f"{name}{suffix}.pt"
    target.parent.mkdir(parents=True, exist_ok=True)
    save_model(loaded, target)
    final = loaded.history[-1]["train_loss"] if loaded.history else None
    record = {"name": name, "file": str(target), "sets": sets, "images": int(sum(len(i) for i in images)),
              "steps": config.steps, "minutes": round(minutes, 1), "final_loss": final}  # fmt: skip
    results = ROOT / "benchmarks" / "results"
    results.mkdir(exist_ok=True)
    (results / f"starter_{target.stem}.json").write_text(json.dumps(record, indent=1))
    print(json.dumps(record), flush=True)
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"starters to train: {', '.join(RECIPES)}")
    parser.add_argument(
        "--leave-out",
        choices=[*FAMILIES, "painted", "suite-painted"],
        help="train without this family of sets",
    )
    parser.add_argument("--out", type=Path, help="folder for the model files (default: the package's)")
    parser.add_argument("--steps", type=int, help="override the recipe's steps")
    parser.add_argument("--list", action="store_true", help="show the recipes")
    parser.add_argument(
        "--record-sizes",
        type=Path,
        metavar="MODEL_FILE",
        help="an object starter trained on these sets: write the sizes of its training objects into it "
        "(no training)",
    )
    args = parser.parse_args()
    if args.list or not args.names:
        for name, recipe in RECIPES.items():
            print(f"{name}: {recipe.description}; {recipe.steps} steps on {', '.join(recipe.sets)}")
        return
    if not DATA.is_dir():
        sys.exit(f"train_starters: no data at {DATA}")
    for name in args.names:
        if args.record_sizes:
            record_sizes(name, args.leave_out, args.record_sizes)
        else:
            train_starter(name, args.leave_out, args.out, args.steps)


if __name__ == "__main__":
    main()

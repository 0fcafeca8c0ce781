"""Non-finite gradients of a 3D U-Net trained on CPU, by memory layout (stop 39).

Trains ``unet3d`` (defaults: base 16) on the semantic mask of gonuclear_mini3d's training
crop for 120 steps, ``--runs`` times in oneDNN's channels-last 3D layout (what 3D networks
used on CPU before stop 39) and as many times in the default layout (what they use now),
and counts the steps whose gradients held a NaN or an infinity (the trainer now skips
them; before, one such step turned every weight NaN). The runs differ only by the CPU's
thread scheduling: the seed is the same.

    python benchmarks/nan_3d.py [--runs 3] [--steps 120]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import tifffile
import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import DATA, hardware, save_results  # noqa: E402

import napari_unetseg.core.training as training  # noqa: E402
import napari_unetseg.core.training_setup as training_setup  # noqa: E402
from napari_unetseg.core.config import ModelSpec, RunOptions, TrainConfig  # noqa: E402
from napari_unetseg.core.events import run_generator  # noqa: E402
from napari_unetseg.core.jobs import start_training  # noqa: E402

LAYOUTS = {"channels_last_3d": torch.channels_last_3d, "default": torch.contiguous_format}


def bad_steps(image, mask, layout, steps: int, anisotropy: float) -> list[int]:
    """The steps of one run whose gradients were not finite."""
    found: list[int] = []
    real_layout, real_check = training_setup.channels_last_format, training.Trainer._finite_gradients

    def check(trainer) -> bool:
        finite = real_check(trainer)
        if not finite:
            found.append(trainer.step)
        return finite

    training_setup.channels_last_format = lambda model, device: layout
    training.Trainer._finite_gradients = check
    try:
        config = TrainConfig(steps=steps, label_mode="dense", patch_size=64, patch_depth=16, batch_size=2,
                             device="cpu")  # fmt: skip
        trainer = start_training([image[:, None]], [mask], ModelSpec("unet3d", anisotropy=anisotropy), config,
                                 RunOptions())  # fmt: skip
        run_generator(trainer.run())
    finally:
        training_setup.channels_last_format, training.Trainer._finite_gradients = real_layout, real_check
    return found


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--steps", type=int, default=120)
    args = parser.parse_args()
    folder = DATA / "gonuclear_mini3d"
    if not folder.exists():
        sys.exit(f"nan_3d: {folder} not found (set UNETSEG_DATA)")
    meta = json.loads((folder / "meta.json").read_text())
    (train,) = meta["train_idx"]
    image = tifffile.imread(folder / "images.tif")[train]
    labels = tifffile.imread(folder / "labels.tif")[train]
    z, y, _ = meta["voxel_size_um_zyx"][train]
    mask = (labels > 0).astype(np.uint8)
    table = {}
    for name, layout in LAYOUTS.items():
        runs = [bad_steps(image, mask, layout, args.steps, z / y) for _ in range(args.runs)]
        table[name] = runs
        hit = sum(1 for steps in runs if steps)
        print(f"{name}: {hit} of {args.runs} runs had non-finite gradients; bad steps per run: "
              f"{[len(s) for s in runs]}", flush=True)  # fmt: skip
    path = save_results({"hardware": hardware(), "steps": args.steps, "runs": table}, "nan_3d")
    print(f"results in {path}")


if __name__ == "__main__":
    main()

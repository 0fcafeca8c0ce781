"""Non-finite gradients of a 3D U-Net trained on CPU, by memory layout and precision
(stop 39; precision and minutes since stop 40).

Trains ``unet3d`` (defaults: base 16) on the semantic mask of gonuclear_mini3d's training
crop for 120 steps, ``--runs`` times in oneDNN's channels-last 3D layout (what 3D networks
used on CPU before stop 39) and as many times in the default layout (what they use now),
and counts the steps whose gradients held a NaN or an infinity (the trainer now skips
them; before, one such step turned every weight NaN), and the minutes of each run. With
``--precisions auto fp32`` each layout also trains in plain fp32 (``auto`` is bf16
autocast on CPUs with native bf16 units, as here). The runs differ only by the CPU's
thread scheduling: the seed is the same.

    python benchmarks/nan_3d.py [--runs 3] [--steps 120] [--precisions auto fp32]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import tifffile
import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import DATA, hardware, save_results  # noqa: E402

import napari_unetseg.core.training as training  # noqa: E402
import napari_unetseg.core.training_setup as training_setup  # noqa: E402
from napari_unetseg.core.config import PRECISIONS, ModelSpec, RunOptions, TrainConfig  # noqa: E402
from napari_unetseg.core.events import run_generator  # noqa: E402
from napari_unetseg.core.jobs import start_training  # noqa: E402

LAYOUTS = {"channels_last_3d": torch.channels_last_3d, "default": torch.contiguous_format}


def bad_steps(image, mask, layout, steps: int, anisotropy: float, precision: str) -> tuple[list[int], float]:
    """The steps of one run whose gradients were not finite, and the run's minutes."""
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
                             device="cpu", precision=precision)  # fmt: skip
        start = time.perf_counter()
        trainer = start_training([image[:, None]], [mask], ModelSpec("unet3d", anisotropy=anisotropy), config,
                                 RunOptions())  # fmt: skip
        run_generator(trainer.run())
        minutes = (time.perf_counter() - start) / 60
    finally:
        training_setup.channels_last_format, training.Trainer._finite_gradients = real_layout, real_check
    return found, minutes


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--precisions", nargs="+", default=["auto"], choices=PRECISIONS)
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
    table, minutes = {}, {}
    for precision in args.precisions:
        for layout_name, layout in LAYOUTS.items():
            name = layout_name if precision == "auto" else f"{layout_name}, {precision}"
            runs = [bad_steps(image, mask, layout, args.steps, z / y, precision) for _ in range(args.runs)]
            table[name], minutes[name] = [steps for steps, _ in runs], [m for _, m in runs]
            hit = sum(1 for steps, _ in runs if steps)
            print(f"{name}: {hit} of {args.runs} runs had non-finite gradients; bad steps per run: "
                  f"{[len(s) for s, _ in runs]}; minutes per run: {[round(m, 2) for _, m in runs]}",
                  flush=True)  # fmt: skip
    results = {"hardware": hardware(), "steps": args.steps, "runs": table, "minutes": minutes}
    path = save_results(results, "nan_3d" + "_".join(["", *args.precisions]) * (args.precisions != ["auto"]))
    print(f"results in {path}")


if __name__ == "__main__":
    main()

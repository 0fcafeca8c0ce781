"""``unetseg demo``: the whole job on the built-in synthetic sample, through files.

Writes the sample (image, painted strokes, ground truth) as TIFFs, trains a small
U-Net on the strokes only, predicts the whole stack and scores it against the truth,
using the same file workflows as ``unetseg train/predict/evaluate``.
"""

from __future__ import annotations

from pathlib import Path

from napari_unetseg.core.config import PredictConfig
from napari_unetseg.core.errors import UserInputError
from napari_unetseg.core.io import write_tiff_atomic
from napari_unetseg.core.metrics import EvaluationResult
from napari_unetseg.core.sample import make_sample
from napari_unetseg.core.workflows import (
    EventCallback,
    evaluate_files,
    predict_files,
    train_from_files,
)

MARKER = ".unetseg-demo"
DEMO_MODEL = {"name": "unet", "depth": 4, "base_channels": 16}


def prepare_demo_folder(out_dir: Path) -> None:
    """Create the demo folder; refuse a non-empty folder the demo did not make."""
    if out_dir.exists():
        if not out_dir.is_dir():
            raise UserInputError(f"{out_dir} is a file: choose another --out for the demo")
        if any(out_dir.iterdir()) and not (out_dir / MARKER).exists():
            raise UserInputError(f"{out_dir} holds files not made by the demo: choose another --out")
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / MARKER).write_text("made by `unetseg demo`; its files are replaced on every run\n")


def run_demo(
    out_dir: str | Path = "unetseg-demo",
    steps: int = 150,
    device: str = "auto",
    on_event: EventCallback = None,
) -> EvaluationResult:
    """Generate the sample, train on its strokes, predict, evaluate; returns the scores."""
    out_dir = Path(out_dir)
    prepare_demo_folder(out_dir)
    sample = make_sample()
    files = {name: out_dir / f"{name}.tif" for name in ("image", "strokes", "truth")}
    for name, array in (("image", sample.image), ("strokes", sample.strokes), ("truth", sample.truth)):
        write_tiff_atomic(files[name], array, "ZYX", overwrite=True)
    run_dir = out_dir / "run"
    train_from_files(
        [files["image"]],
        [files["strokes"]],
        run_dir,
        model_options=DEMO_MODEL,
        train_options={
            "label_mode": "sparse",
            "steps": steps,
            "patch_size": 128,
            "batch_size": 8,
            "steps_per_epoch": max(1, steps // 3),
            "device": device,
        },
        overwrite=True,
        on_event=on_event,
    )
    predict_files(
        run_dir / "model.pt",
        [files["image"]],
        out_dir / "prediction",
        PredictConfig(device=device),
        overwrite=True,
        on_event=on_event,
    )
    return evaluate_files(out_dir / "prediction" / "image.tif", files["truth"])

"""``unetseg demo``: the whole job on the built-in synthetic sample, through files.

Writes the sample (image, painted strokes, ground truth) as TIFFs, trains the default
U-Net with the default settings on the strokes only (for :data:`DEMO_STEPS` steps),
predicts the whole stack and scores it against the truth, using the same file
workflows as ``unetseg train/predict/evaluate``. Light to import (the CLI reads its
defaults): the engine is imported when the demo runs.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from napari_unetseg.core.errors import UserInputError

if TYPE_CHECKING:
    from napari_unetseg.core.metrics import EvaluationResult

MARKER = ".unetseg-demo"
DEMO_OUT = "unetseg-demo"
DEMO_STEPS = 150  # about 1.5 minutes on a 2-core CPU


def prepare_demo_folder(out_dir: Path) -> None:
    """Create the demo folder; refuse a non-empty folder the demo did not make."""
    if out_dir.exists():
        if not out_dir.is_dir():
            raise UserInputError(f"{out_dir} is a file", ("choose another folder for the demo", "out"))
        if any(out_dir.iterdir()) and not (out_dir / MARKER).exists():
            raise UserInputError(
                f"{out_dir} holds files not made by the demo", ("choose another folder", "out")
            )
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / MARKER).write_text("made by `unetseg demo`; its files are replaced on every run\n")


def run_demo(
    out_dir: str | Path = DEMO_OUT,
    steps: int = DEMO_STEPS,
    device: str = "auto",
    on_event: Callable[[Any], None] | None = None,
) -> EvaluationResult:
    """Generate the sample, train on its strokes, predict, evaluate; returns the scores."""
    from napari_unetseg.core.config import PredictConfig
    from napari_unetseg.core.file_prediction import predict_files
    from napari_unetseg.core.io import write_tiff_atomic
    from napari_unetseg.core.sample import make_sample
    from napari_unetseg.core.workflows import evaluate_files, train_from_files

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
        train_options={"steps": steps, "device": device},
        overwrite=True,
        on_event=on_event,
        class_names=["background", "nucleus"],  # as the Annotate dock would call them
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

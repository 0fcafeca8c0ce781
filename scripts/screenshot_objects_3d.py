"""Screenshot of 3D objects from a 2D model: the test crop of ``gonuclear_mini3d``
(confocal nuclei, 100^3), a 2D object model trained on the slices of the other crop, the
Predict dock with "3D objects (z-stack)" ticked and the Evaluate dock scoring the objects
as volumes, at a laptop's 1366x768.

Run under a virtual display from the project root::

    xvfb-run -a -s "-screen 0 1366x768x24" .venv/bin/python scripts/screenshot_objects_3d.py [STEPS]

It trains the model first (500 steps by default, about a minute on a laptop CPU) and
writes docs/images/objects-3d.png.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import tifffile
from screenshot_objects import grab, laptop_viewer, predict_and_score
from screenshots import settle

SET = Path(__file__).resolve().parents[2] / "shared" / "data" / "gonuclear_mini3d"


def train_model(image: np.ndarray, objects: np.ndarray, steps: int, path: Path) -> Path:
    """A 2D object model (U-Net defaults, 96 px patches) trained on the slices of a crop."""
    from napari_unetseg.core.checkpoint import save_model
    from napari_unetseg.core.config import ModelSpec, RunOptions, TrainConfig
    from napari_unetseg.core.events import run_generator
    from napari_unetseg.core.jobs import start_training

    config = TrainConfig(steps=steps, label_mode="dense", objects=True, patch_size=96)
    trainer = start_training([image[:, None]], [objects], ModelSpec(), config, RunOptions())
    result = run_generator(trainer.run())
    return save_model(result.loaded, path)


def main() -> None:
    steps = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    meta = json.loads((SET / "meta.json").read_text())
    (train,), (test,) = meta["train_idx"], meta["test_idx"]
    images, labels = tifffile.imread(SET / "images.tif"), tifffile.imread(SET / "labels.tif")
    model = train_model(images[train], labels[train], steps, Path(tempfile.mkdtemp()) / "nuclei-2d.pt")
    viewer, app = laptop_viewer()
    z, y, x = meta["voxel_size_um_zyx"][test]
    image = viewer.add_image(images[test], name="nuclei", scale=(z, y, x))
    viewer.add_labels(labels[test], name="ground truth", visible=False, scale=(z, y, x))
    predict, evaluate = predict_and_score(viewer, app, model, image, objects_3d=True)
    predict.native.parentWidget().raise_()  # the Predict tab in front
    viewer.layers["object errors"].visible = False  # the objects themselves, each its own colour
    viewer.layers["nuclei objects"].visible = True
    viewer.dims.set_current_step(0, 50 * z)
    settle(app, 0.5)
    viewer.reset_view()
    grab(viewer, app, "objects-3d.png", predict, evaluate)


if __name__ == "__main__":
    main()

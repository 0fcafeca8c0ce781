"""Screenshot of the paint -> train -> predict cycle in a 1366x768 window, for docs/user-guide.md.

Run under a virtual display from the project root::

    xvfb-run -a -s "-screen 0 1366x768x24" .venv/bin/python scripts/screenshot_laptop.py

Four DSB2018 fluorescence frames of 256x256 (``$UNETSEG_DATA/dsb2018_fluo_256x256``,
default ``../shared/data``), strokes simulated from their labels on two frames, class
names "background, nucleus" from the Annotate dock, 150 training steps with the dock's
defaults, the preview under the strokes. The Train dock (Advanced folded) and the
Annotate dock share the right side of the window.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from _screenshot import grab_when_trained

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "images" / "train-laptop.png"
DATA = Path(os.environ.get("UNETSEG_DATA", ROOT.parent / "shared" / "data")) / "dsb2018_fluo_256x256"


def strokes_from(truth: np.ndarray, seed: int = 0) -> np.ndarray:
    """Thin strokes: a few rows through nuclei (class 2) and through background (class 1)."""
    rng = np.random.default_rng(seed)
    strokes = np.zeros(truth.shape, np.uint8)
    for row in rng.choice(np.arange(8, truth.shape[0] - 8), 10, replace=False):
        line = truth[row - 1 : row + 2] > 0
        strokes[row - 1 : row + 2][line] = 2
        strokes[row - 1 : row + 2][~line & (rng.random(line.shape) < 0.5)] = 1
    return strokes


def main() -> None:
    import napari
    import tifffile
    from qtpy.QtCore import Qt, QTimer

    images = tifffile.imread(DATA / "images.tif")[:4].astype(np.float32)
    truth = tifffile.imread(DATA / "labels.tif")[:4]
    viewer = napari.Viewer(title="napari-unetseg")
    viewer.window.resize(1366, 768)
    image = viewer.add_image(images, name="nuclei")
    annotate_dock, annotate = viewer.window.add_plugin_dock_widget("napari-unetseg", "Annotate")
    annotate._classes.value = "background, nucleus"
    annotations = annotate.add_annotation_layer()
    for index in (0, 2):
        annotations.data[index] = strokes_from(truth[index], index)
    annotations.refresh()
    train_dock, train = viewer.window.add_plugin_dock_widget("napari-unetseg", "Train")

    def drag_divider() -> None:  # down to the Annotate dock's content, as a user would
        window = annotate.native.window()
        window.resizeDocks([annotate_dock, train_dock], [200, 520], Qt.Orientation.Vertical)

    train._image.value, train._labels_layer.value = [image], annotations
    train._steps.value = 150

    viewer.dims.set_current_step(0, 0)  # a painted frame in view: strokes over the preview
    QTimer.singleShot(1000, drag_divider)
    QTimer.singleShot(2000, train.start)
    grab_when_trained(viewer, train, OUT, after_ms=8000)
    napari.run()


if __name__ == "__main__":
    main()

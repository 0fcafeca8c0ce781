"""Screenshot of fine-tuning from a starter in a 1366x768 window, for docs/user-guide.md.

Run under a virtual display from the project root::

    xvfb-run -a -s "-screen 0 1366x768x24" .venv/bin/python scripts/screenshot_starter.py

Two S-BSST265 test images (``$UNETSEG_DATA/sbsst265_1024x1280``, default
``../shared/data``; tissue-section DAPI, not in the starter's training split), strokes
simulated from their labels as the sample data's (a background stroke in each cell of a
4 x 4 grid, a stroke across 12 nuclei), the Train dock's "Start from" on the nuclei
starter, 50 steps with the dock's other defaults, the preview under the strokes.
Writes docs/images/train-starter.png.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from _screenshot import grab_when_trained

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "images" / "train-starter.png"
DATA = Path(os.environ.get("UNETSEG_DATA", ROOT.parent / "shared" / "data")) / "sbsst265_1024x1280"


def main() -> None:
    import napari
    import tifffile
    from qtpy.QtCore import QTimer

    from napari_unetseg.core.sample import _strokes

    test = json.loads((DATA / "meta.json").read_text())["test_idx"][:2]
    images = tifffile.imread(DATA / "images.tif")[test]
    truth = tifffile.imread(DATA / "labels.tif")[test]
    rng = np.random.default_rng(0)
    strokes = np.stack([_strokes(t > 0, rng, grid=4, nuclei=12) for t in truth])  # 1 background, 2 nucleus
    viewer = napari.Viewer(title="napari-unetseg")
    viewer.window.resize(1366, 768)
    image = viewer.add_image(images, name="tissue DAPI")
    annotations = viewer.add_labels(strokes, name="strokes")
    annotations.brush_size = 5
    _, train = viewer.window.add_plugin_dock_widget("napari-unetseg", "Train")
    train._image.value, train._labels_layer.value = [image], annotations
    train._start_from.value = "starter:nuclei"
    train._steps.value = 50

    viewer.dims.set_current_step(0, 0)
    QTimer.singleShot(2000, train.start)
    grab_when_trained(viewer, train, OUT, after_ms=8000)
    napari.run()


if __name__ == "__main__":
    main()

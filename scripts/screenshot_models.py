"""Screenshot of the Train dock's architecture list on a real z-stack, for docs/user-guide.md.

Run under a virtual display from the project root::

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python scripts/screenshot_models.py

Opens the cells3d nuclei z-stack (shared data) with its voxel size as the layer scale,
chooses the 3D U-Net in the Train dock and opens the model list, which shows every
architecture with its parameter count; saves docs/images/train-models.png.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import tifffile

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "cells3d_nuclei_pseudolabels"
OUT = ROOT / "docs" / "images" / "train-models.png"


def settle(app, seconds=1.0):
    end = time.time() + seconds
    while time.time() < end:
        app.processEvents()
        time.sleep(0.02)


def main() -> None:
    import napari
    from qtpy.QtWidgets import QApplication

    stack = tifffile.imread(DATA / "images.tif")
    voxel = json.loads((DATA / "meta.json").read_text())["voxel_size_um_zyx"]
    viewer = napari.Viewer(title="napari-unetseg")
    app = QApplication.instance()
    viewer.window.resize(1600, 1000)
    image = viewer.add_image(stack, name="nuclei (cells3d)", scale=voxel)
    viewer.dims.set_current_step(0, 30)
    _, train = viewer.window.add_plugin_dock_widget("napari-unetseg", "Train")
    annotations = viewer.add_labels(stack.astype("uint8") * 0, name="annotations", scale=voxel)
    train._image.value = [image]
    train._labels_layer.value = annotations
    train._model.value = "unet3d"
    settle(app, 1.5)
    train._model.native.showPopup()
    settle(app, 1.5)
    # the whole virtual screen: the open list is a pop-up window of its own
    app.primaryScreen().grabWindow(0).save(str(OUT))
    print("wrote", OUT)
    train._model.native.hidePopup()
    viewer.close()


if __name__ == "__main__":
    main()

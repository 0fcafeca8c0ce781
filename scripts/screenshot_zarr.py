"""Screenshot of an OME-Zarr store in napari: the image pyramid, the labels ``unetseg
predict --dask`` wrote into it, and the Predict dock's own prediction of the pyramid.

Run under a virtual display from the project root (S-BSST265 from ../shared/data)::

    xvfb-run -a -s "-screen 0 1366x768x24" .venv/bin/python scripts/screenshot_zarr.py

It builds a 2 x 2 mosaic of S-BSST265 nuclei as a two-level OME-Zarr pyramid, trains a
small U-Net on two other images' nucleus masks (200 steps), writes labels into the store
with ``unetseg predict --dask local:2 --label-name unetseg``, opens the store with the
plugin's reader and predicts the pyramid with the Predict dock. Writes docs/images/zarr.png.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "sbsst265_1024x1280"


def prepare(folder: Path) -> tuple[Path, Path]:
    """The OME-Zarr store (labels written by the CLI on dask) and the model file."""
    import zarr
    from ome_zarr.writer import write_image

    meta = json.loads((DATA / "meta.json").read_text())
    images, labels = tifffile.imread(DATA / "images.tif"), tifffile.imread(DATA / "labels.tif")
    train = meta["train_idx"][:6]
    masks = (labels[train] > 0).astype(np.uint8) + 1
    tifffile.imwrite(folder / "train.tif", images[train], metadata={"axes": "ZYX"}, photometric="minisblack")
    tifffile.imwrite(folder / "masks.tif", masks, metadata={"axes": "ZYX"}, photometric="minisblack")
    unetseg = [sys.executable, "-m", "napari_unetseg"]
    train = ["train", "--images", str(folder / "train.tif"), "--labels", str(folder / "masks.tif"), "--dense"]
    train += ["--steps", "200", "--class-names", "background,nucleus", "--out", str(folder / "run")]
    subprocess.run([*unetseg, *train], check=True)
    test = meta["test_idx"][:4]
    mosaic = np.block([[images[test[0]], images[test[1]]], [images[test[2]], images[test[3]]]])
    store = folder / "tissue.ome.zarr"
    write_image(mosaic, zarr.open_group(str(store), mode="w"), axes="yx", scale_factors=(2,),
                coordinate_transformations=[[{"type": "scale", "scale": [0.5, 0.5]}],
                                            [{"type": "scale", "scale": [1.0, 1.0]}]])  # fmt: skip
    model = folder / "run" / "model.pt"
    predict = ["predict", "--model", str(model), "--label-name", "unetseg", "--dask", "local:2"]
    subprocess.run([*unetseg, *predict, "--block-size", "1024", str(store)], check=True)
    return store, model


def main() -> None:
    import napari
    from qtpy.QtWidgets import QApplication

    folder = Path(tempfile.mkdtemp(prefix="unetseg_zarr_"))
    store, model = prepare(folder)
    viewer = napari.Viewer(title="napari-unetseg")
    app = QApplication.instance()
    viewer.window.resize(1366, 768)
    layers = viewer.open(str(store), plugin="napari-unetseg")
    image = next(layer for layer in layers if layer.name == "tissue")
    viewer.layers["unetseg"].visible = False
    _, predict = viewer.window.add_plugin_dock_widget("napari-unetseg", "Predict")
    predict._source.value = "file"
    predict._model_file.value = str(model)
    predict._images.value = [image]
    predict.predict()
    start = time.time()
    while predict.worker is not None and time.time() - start < 600:
        app.processEvents()
        time.sleep(0.05)
    viewer.camera.zoom *= 2.5
    viewer.camera.center = (0, 700, 900)
    end = time.time() + 2
    while time.time() < end:
        app.processEvents()
        time.sleep(0.05)
    path = ROOT / "docs" / "images" / "zarr.png"
    viewer.screenshot(str(path), canvas_only=False, flash=False)
    print("wrote", path)
    viewer.close()


if __name__ == "__main__":
    main()

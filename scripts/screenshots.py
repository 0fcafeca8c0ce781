"""Screenshots of the four docks at work on real data (ISBI 2012 EM), for docs/user-guide.md.

Run under a virtual display from the project root::

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python scripts/screenshots.py

It drives the docks exactly as a user would (through their buttons' methods): paints
scribbles on three slices, trains with the live preview, predicts the stack and
evaluates it, saving a full-window PNG at each stage to docs/images/.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import tifffile

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "isbi2012_em_membranes"
OUT = ROOT / "docs" / "images"
sys.path.insert(0, str(ROOT / "benchmarks"))

from scribbles import draw_scribbles  # noqa: E402


def wait(app, condition, timeout=1800):
    """Process Qt events until ``condition()`` holds."""
    start = time.time()
    while not condition():
        app.processEvents()
        time.sleep(0.02)
        if time.time() - start > timeout:
            raise TimeoutError


def settle(app, seconds=1.0):
    end = time.time() + seconds
    while time.time() < end:
        app.processEvents()
        time.sleep(0.02)


def main() -> None:
    import napari
    from qtpy.QtWidgets import QApplication

    images = tifffile.imread(DATA / "images.tif")[:6]
    membrane = tifffile.imread(DATA / "labels.tif")[:6]
    truth = np.where(membrane == 1, 1, 2).astype(np.uint8)  # 1 = membrane, 2 = cell interior
    rng = np.random.default_rng(0)
    strokes = np.zeros_like(truth)
    for i in range(3):
        strokes[i] = draw_scribbles(membrane[i], rng, strokes_per_class=8)

    viewer = napari.Viewer(title="napari-unetseg")
    app = QApplication.instance()
    viewer.window.resize(1600, 1000)
    image = viewer.add_image(images, name="em")
    viewer.add_labels(truth, name="ground truth", visible=False)
    docks = {}

    def show_only(name):
        for key, (dock, _) in docks.items():
            dock.setVisible(key == name)
        settle(app)

    def shot(name):
        settle(app, 1.5)
        path = OUT / f"{name}.png"
        viewer.screenshot(str(path), canvas_only=False, flash=False)
        print("wrote", path)

    for name in ("Annotate", "Train", "Predict", "Evaluate"):
        docks[name] = viewer.window.add_plugin_dock_widget("napari-unetseg", name)

    show_only("Annotate")
    annotate = docks["Annotate"][1]
    annotate._classes.value = "membrane, cell interior"
    annotations = annotate.add_annotation_layer()
    annotations.data = strokes  # the scribbles a user paints with the brush
    annotations.brush_size = 3
    shot("annotate")

    show_only("Train")
    train = docks["Train"][1]
    train._image.value = [image]
    train._labels_layer.value = annotations
    train._steps.value = 300
    train._unpainted.value = True  # a few strokes: learn from the unpainted pixels too
    train._tries.value = 3  # three seeds for 75 steps each; the lowest loss goes on
    viewer.dims.set_current_step(0, 4)  # an unpainted slice: the preview shows generalisation
    train.start()
    wait(app, lambda: train._progress.value >= 200 and "training preview" in viewer.layers)
    shot("train")
    wait(app, lambda: train.worker is None)
    viewer.layers["training preview"].visible = False

    show_only("Predict")
    predict = docks["Predict"][1]
    predict._images.value = [image]
    predict._scope.value = "stack"
    predict.predict()
    wait(app, lambda: predict.worker is None)
    viewer.layers["em prediction"].opacity = 0.5
    annotations.visible = False
    shot("predict")

    show_only("Evaluate")
    evaluate = docks["Evaluate"][1]
    evaluate._prediction.value = viewer.layers["em prediction"]
    evaluate._truth.value = viewer.layers["ground truth"]
    evaluate.evaluate()
    wait(app, lambda: evaluate.worker is None)
    evaluate._error_class.value = 1
    viewer.layers["em prediction"].visible = False
    shot("evaluate")
    print(evaluate._status.value)
    viewer.close()


if __name__ == "__main__":
    main()

"""Screenshot of objects in the docks: DSB2018 nuclei, the objects a model found, their
measurements and the object error view, at a laptop's 1366x768.

Run under a virtual display from the project root, with an object model file (e.g. the
one ``benchmarks/objects_mode.py`` saves to benchmarks/results/)::

    xvfb-run -a -s "-screen 0 1366x768x24" .venv/bin/python scripts/screenshot_objects.py MODEL.pt

It opens three test images of ``dsb2018_fluo_520x696``, predicts their objects in the
Predict dock, scores them against the true objects in the Evaluate dock and writes
docs/images/objects.png.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import tifffile
from screenshots import OUT, settle, wait

SET = Path(__file__).resolve().parents[2] / "shared" / "data" / "dsb2018_fluo_520x696"


def main() -> None:
    import napari
    from qtpy.QtWidgets import QApplication

    if len(sys.argv) != 2:
        sys.exit("usage: screenshot_objects.py MODEL.pt")
    test = json.loads((SET / "meta.json").read_text())["test_idx"][:3]
    images = tifffile.imread(SET / "images.tif")[test]
    truth = tifffile.imread(SET / "labels.tif")[test]
    viewer = napari.Viewer(title="napari-unetseg")
    app = QApplication.instance()
    viewer.window._qt_window.showNormal()
    viewer.window.resize(1366, 768)
    image = viewer.add_image(images, name="nuclei")
    viewer.add_labels(truth, name="ground truth", visible=False)
    _, predict = viewer.window.add_plugin_dock_widget("napari-unetseg", "Predict")
    predict._source.value = "file"
    predict._model_file.value = [Path(sys.argv[1]).resolve()]
    predict._images.value = [image]
    predict.predict()
    wait(app, lambda: predict.worker is None)
    _, evaluate = viewer.window.add_plugin_dock_widget("napari-unetseg", "Evaluate", tabify=True)
    evaluate.evaluate()
    wait(app, lambda: evaluate.worker is None)
    viewer.layers["nuclei objects"].visible = False
    viewer.layers.selection.active = viewer.layers["nuclei objects"]
    settle(app, 1.5)
    path = OUT / "objects.png"
    viewer.screenshot(str(path), canvas_only=False, flash=False)
    print("wrote", path)
    print(predict._status.value, "|", evaluate._status.value)
    print(viewer.layers["nuclei objects"].features.head())
    viewer.close()


if __name__ == "__main__":
    main()

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


def laptop_viewer():
    """A napari window at a laptop's 1366x768, and the Qt application (the object screenshots')."""
    import napari
    from qtpy.QtWidgets import QApplication

    viewer = napari.Viewer(title="napari-unetseg")
    app = QApplication.instance()
    viewer.window._qt_window.showNormal()
    viewer.window.resize(1366, 768)
    return viewer, app


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit("usage: screenshot_objects.py MODEL.pt")
    test = json.loads((SET / "meta.json").read_text())["test_idx"][:3]
    images = tifffile.imread(SET / "images.tif")[test]
    truth = tifffile.imread(SET / "labels.tif")[test]
    viewer, app = laptop_viewer()
    image = viewer.add_image(images, name="nuclei")
    viewer.add_labels(truth, name="ground truth", visible=False)
    predict, evaluate = predict_and_score(viewer, app, Path(sys.argv[1]).resolve(), image)
    viewer.layers["nuclei objects"].visible = False
    grab(viewer, app, "objects.png", predict, evaluate)


def predict_and_score(viewer, app, model: Path, image, objects_3d: bool = False, match_size: bool = True):
    """The Predict dock's objects of ``image`` with the model file (``objects_3d``: its
    "3D objects (z-stack)" ticked; ``match_size``: its "Match object size"), then the
    Evaluate dock's scores, in a tab beside it."""
    _, predict = viewer.window.add_plugin_dock_widget("napari-unetseg", "Predict")
    predict._source.value = "file"
    predict._model_file.value = [model]
    predict._images.value = [image]
    predict._objects_3d.value = objects_3d
    predict._match_size.value = match_size
    predict.predict()
    wait(app, lambda: predict.worker is None)
    _, evaluate = viewer.window.add_plugin_dock_widget("napari-unetseg", "Evaluate", tabify=True)
    evaluate.evaluate()
    wait(app, lambda: evaluate.worker is None)
    return predict, evaluate


def grab(viewer, app, name: str, predict, evaluate) -> None:
    """Screenshot the window to docs/images/``name`` with the objects layer selected, print
    the docks' status lines and the first measurements, and close the viewer."""
    objects = viewer.layers[f"{predict._images.value[0].name} objects"]
    viewer.layers.selection.active = objects
    settle(app, 1.5)
    path = OUT / name
    viewer.screenshot(str(path), canvas_only=False, flash=False)
    print("wrote", path)
    print(predict._status.value, "|", evaluate._status.value)
    print(objects.features.head())
    viewer.close()


if __name__ == "__main__":
    main()

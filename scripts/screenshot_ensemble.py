"""Screenshot of the Predict dock predicting with an ensemble of model files.

Run under a virtual display from the project root, with model files saved by
``benchmarks/isbi_sparse.py --save-models`` (e.g. three training seeds on one draw)::

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python scripts/screenshot_ensemble.py A.pt B.pt C.pt

It opens the ISBI 2012 test slices (24-29), chooses the files in the Predict dock as a
user does in its file dialog, predicts the stack and writes docs/images/predict-ensemble.png.
"""

from __future__ import annotations

import sys
from pathlib import Path

import tifffile
from screenshots import DATA, OUT, settle, wait


def main() -> None:
    import napari
    from qtpy.QtWidgets import QApplication

    models = [Path(arg).resolve() for arg in sys.argv[1:]]
    if len(models) < 2:
        sys.exit("usage: screenshot_ensemble.py MODEL.pt MODEL.pt [MODEL.pt ...]")
    images = tifffile.imread(DATA / "images.tif")[24:30]
    viewer = napari.Viewer(title="napari-unetseg")
    app = QApplication.instance()
    viewer.window.resize(1600, 1000)
    image = viewer.add_image(images, name="em test")
    _, predict = viewer.window.add_plugin_dock_widget("napari-unetseg", "Predict")
    predict._source.value = "file"
    predict._model_file.value = models
    predict._images.value = [image]
    predict._scope.value = "stack"
    predict.predict()
    wait(app, lambda: predict.worker is None)
    viewer.layers["em test prediction"].opacity = 0.5
    settle(app, 1.5)
    path = OUT / "predict-ensemble.png"
    viewer.screenshot(str(path), canvas_only=False, flash=False)
    print("wrote", path)
    print(predict._model_info.value, "|", predict._status.value)
    viewer.close()


if __name__ == "__main__":
    main()

"""Screenshot of "Match object size" (stop 45): S-BSST265's 10x field (test image 53, 265
nuclei of about 360 pixels) predicted with an object model trained on the set's 63x nuclei
(6000-28000 pixels), at a laptop's 1366x768.

Run under a virtual display from the project root, with such a model file (e.g. the dense
one ``benchmarks/objects_mode.py --set sbsst265_1024x1280`` saves to benchmarks/results/)::

    xvfb-run -a -s "-screen 0 1366x768x24" .venv/bin/python scripts/screenshot_object_scale.py MODEL.pt

Writes docs/images/object-scale.png and prints the Evaluate dock's status line with and
without the size match.
"""

from __future__ import annotations

import sys
from pathlib import Path

import tifffile
from screenshot_objects import grab, laptop_viewer, predict_and_score

SET = Path(__file__).resolve().parents[2] / "shared" / "data" / "sbsst265_1024x1280"
IMAGE = 53  # the test split's 10x field


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit("usage: screenshot_object_scale.py MODEL.pt")
    model = Path(sys.argv[1]).resolve()
    image = tifffile.imread(SET / "images.tif")[IMAGE]
    truth = tifffile.imread(SET / "labels.tif")[IMAGE]
    for match in (False, True):  # the screenshot is the last, with the default
        viewer, app = laptop_viewer()
        layer = viewer.add_image(image, name="10x nuclei")
        viewer.add_labels(truth, name="ground truth", visible=False)
        predict, evaluate = predict_and_score(viewer, app, model, layer, match_size=match)
        print("Match object size" if match else "without it", end=": ")
        if match:
            viewer.camera.zoom *= 1.6  # the nuclei are small: show a part of the field
            viewer.layers["object errors"].visible = False
            viewer.layers["10x nuclei objects"].visible = True
            viewer.window._dock_widgets["Predict (napari-unetseg)"].raise_()  # its "Match object size"
            grab(viewer, app, "object-scale.png", predict, evaluate)
        else:
            print(predict._status.value, "|", evaluate._status.value)
            viewer.close()


if __name__ == "__main__":
    main()

"""Screenshot of the Train dock refusing an input in its own words, for docs/bad-input.md.

Run under a virtual display from the project root::

    xvfb-run -a -s "-screen 0 1366x768x24" .venv/bin/python scripts/screenshot_refused.py

The synthetic sample (96-px slices) with its strokes, a patch size of 128 asked for: the
notification and the dock's status line name the dock's control ('Patch size'), not a flag.
"""

from __future__ import annotations

from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "docs" / "images" / "train-refused.png"


def main() -> None:
    import napari
    from qtpy.QtCore import QTimer

    from napari_unetseg.core.sample import make_sample

    sample = make_sample(n_slices=4, size=96, painted_slices=2, seed=1)
    viewer = napari.Viewer(title="napari-unetseg")
    viewer.window.resize(1366, 768)
    image = viewer.add_image(sample.image, name="nuclei")
    strokes = viewer.add_labels(sample.strokes, name="strokes")
    _, train = viewer.window.add_plugin_dock_widget("napari-unetseg", "Train")
    train._image.value, train._labels_layer.value = [image], strokes

    def start() -> None:
        train._patch.value = 128  # larger than the 96-px slices
        train.start()

    def grab() -> None:
        if train.worker is not None:  # the data are checked in the worker
            QTimer.singleShot(500, grab)
            return
        viewer.screenshot(str(OUT), canvas_only=False, flash=False)
        print(f"{OUT}: {train._status.value}")
        viewer.close()

    QTimer.singleShot(2500, start)
    QTimer.singleShot(6000, grab)
    napari.run()


if __name__ == "__main__":
    main()

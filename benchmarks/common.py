"""Helpers shared by the benchmark scripts: data location, hardware line, timing."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

DATA = Path(os.environ.get("UNETSEG_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def hardware() -> str:
    """One line naming the machine the numbers come from."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    gpu = f", GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ", no GPU"
    return (
        f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads){gpu}"
    )


def object_set(name: str, script: str, train_images: int) -> tuple[np.ndarray, np.ndarray, list, list]:
    """A set with instance labels (``DATA/name``): its images, its objects, the first
    ``train_images`` of its training split and its test split (meta.json); ``script``
    names the caller in the message when the set is not there."""
    import tifffile

    folder = DATA / name
    if not folder.exists():
        raise SystemExit(f"{script}: {folder} not found (set UNETSEG_DATA)")
    meta = json.loads((folder / "meta.json").read_text())

    def split(key: str) -> list[int]:
        value = meta[key]
        return value if isinstance(value, list) else json.loads(value)

    images, objects = tifffile.imread(folder / "images.tif"), tifffile.imread(folder / "labels.tif")
    return images, objects, split("train_idx")[:train_images], split("test_idx")


RESULTS = Path(__file__).parent / "results"  # results, model files, arrays (ignored by git)


def save_results(results: dict, name: str) -> Path:
    """Write ``benchmarks/results/<name>.json`` (ignored by git) and return the path."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(results, indent=2))
    return path


def random_forest(images, strokes, test_images) -> tuple[np.ndarray, float]:
    """The ilastik recipe: scikit-image's trainable segmentation (a 100-tree random forest
    on multiscale intensity, edge and texture features, sigma 1-16) trained on the painted
    pixels of ``strokes`` (0 = unpainted) over the 2D ``images``; its labels (the strokes'
    values) for the 2D ``test_images``, and the seconds it took, features included."""
    from functools import partial

    from skimage import feature, future
    from sklearn.ensemble import RandomForestClassifier

    features = partial(
        feature.multiscale_basic_features, intensity=True, edges=True, texture=True, sigma_min=1, sigma_max=16
    )
    start = time.perf_counter()
    train_features = np.concatenate([features(image) for image in images], axis=1)
    forest = RandomForestClassifier(n_estimators=100, n_jobs=-1, random_state=0)
    forest = future.fit_segmenter(np.concatenate(list(strokes), axis=1), train_features, forest)
    pred = np.stack([future.predict_segmenter(features(image), forest) for image in test_images])
    return pred, time.perf_counter() - start


def viewer_with_train_dock(n_slices: int, painted_slices: int, size: int = 256):
    """A shown napari viewer holding the synthetic sample (``size`` px slices) and a Train
    dock set up to train on its strokes (for an open-ended run); returns ``(viewer, app,
    train_dock, sample)``."""
    import napari
    from qtpy.QtWidgets import QApplication

    from napari_unetseg.core.sample import make_sample

    sample = make_sample(n_slices=n_slices, size=size, painted_slices=painted_slices)
    viewer = napari.Viewer(show=True)
    image = viewer.add_image(sample.image, name="nuclei")
    strokes = viewer.add_labels(sample.strokes, name="strokes")
    _, train = viewer.window.add_plugin_dock_widget("napari-unetseg", "Train")
    train._image.value = [image]
    train._labels_layer.value = strokes
    train._steps.value = 1_000_000
    return viewer, QApplication.instance(), train, sample

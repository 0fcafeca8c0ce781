"""Object mode end to end: train on objects, predict objects, score them (unetseg train --objects)."""

from __future__ import annotations

import json

import numpy as np
import tifffile
from scipy import ndimage
from skimage.measure import label as connected_components
from test_instances import touching_discs

from napari_unetseg.core.objects import object_scores


def nuclei_like(objects: np.ndarray, rng) -> np.ndarray:
    """Bright centres and dim rims, as stained nuclei: touching objects show a dimmer seam."""
    depth = np.zeros(objects.shape, np.float32)
    for i in np.unique(objects[objects > 0]):
        inside = objects == i
        depth[inside] = ndimage.distance_transform_edt(inside)[inside]
    image = np.clip(depth / 4, 0, 1) * 150 + (objects > 0) * 50 + rng.normal(0, 8, objects.shape)
    return image.astype(np.float32)


def test_touching_objects_are_learnt_apart_from_the_command_line(tmp_path, cli):
    rng = np.random.default_rng(0)
    objects = np.stack([touching_discs((96, 96), seed=s, n=14) for s in range(4)])
    images = np.stack([nuclei_like(o, rng) for o in objects])
    files = {"train": images[:3], "train_objects": objects[:3], "test": images[3], "truth": objects[3]}
    for name, array in files.items():
        axes = "TYX" if array.ndim == 3 else "YX"
        tifffile.imwrite(tmp_path / f"{name}.tif", array, metadata={"axes": axes}, photometric="minisblack")
    small = ["--depth", "3", "--base-channels", "8", "--patch-size", "64", "--batch-size", "4"]
    small += ["--device", "cpu"]
    proc = cli("train", "--images", tmp_path / "train.tif", "--labels", tmp_path / "train_objects.tif",
               "--out", tmp_path / "run", "--objects", "--steps", "200", *small)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    model = tmp_path / "run" / "model.pt"
    assert cli("predict", "--model", model, "--out", tmp_path / "pred", tmp_path / "test.tif").returncode == 0
    predicted = tifffile.imread(tmp_path / "pred" / "test.tif")
    assert predicted.dtype == np.uint32 and predicted.max() > 5  # object ids, not classes
    proc = cli("evaluate", "--objects", "--prediction", tmp_path / "pred" / "test.tif",
               "--truth", tmp_path / "truth.tif", "--json", tmp_path / "scores.json")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    f1 = json.loads((tmp_path / "scores.json").read_text())["all"]["f1"]
    ceiling = object_scores(objects[3], connected_components(objects[3] > 0, connectivity=1)).f1
    assert f1 > 0.8 and f1 > ceiling + 0.15  # beats any pixel mask's connected components
    # --semantic: the classes the network learnt
    classes = tmp_path / "classes"
    proc = cli("predict", "--model", model, "--out", classes, "--semantic", tmp_path / "test.tif")
    assert proc.returncode == 0, proc.stderr
    assert set(np.unique(tifffile.imread(classes / "test.tif"))) <= {0, 1, 2}


def test_objects_need_a_2d_model(tmp_path):
    import pytest

    from napari_unetseg.core.config import ModelSpec, RunOptions, TrainConfig
    from napari_unetseg.core.errors import UserInputError
    from napari_unetseg.core.jobs import start_training

    objects = touching_discs((64, 64), seed=1, n=6)[None].repeat(4, 0)
    with pytest.raises(UserInputError, match="2D models"):
        start_training([objects[:, None].astype(np.float32)], [objects], ModelSpec("unet3d"),
                       TrainConfig(objects=True), RunOptions())  # fmt: skip

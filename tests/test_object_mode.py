"""Object mode end to end: train on objects, predict objects, score them (unetseg train --objects)."""

from __future__ import annotations

import csv
import json

import numpy as np
import tifffile
import torch
from scipy import ndimage
from skimage.measure import label as connected_components
from test_instances import touching_discs

from napari_unetseg.core.checkpoint import load_model
from napari_unetseg.core.objects import object_scores


def nuclei_like(objects: np.ndarray, rng) -> np.ndarray:
    """Bright centres and dim rims, as stained nuclei: touching objects show a dimmer seam."""
    depth = np.zeros(objects.shape, np.float32)
    for i in np.unique(objects[objects > 0]):
        inside = objects == i
        depth[inside] = ndimage.distance_transform_edt(inside)[inside]
    image = np.clip(depth / 4, 0, 1) * 150 + (objects > 0) * 50 + rng.normal(0, 8, objects.shape)
    return image.astype(np.float32)


def write_tiff(path, array: np.ndarray) -> None:
    """A test file: a stack of planes (TYX) or one plane (YX)."""
    axes = "TYX" if array.ndim == 3 else "YX"
    tifffile.imwrite(path, array, metadata={"axes": axes}, photometric="minisblack")


def train_objects_by_cli(cli, tmp_path, images: np.ndarray, objects: np.ndarray, steps: int = 300):
    """``unetseg train --objects --dense`` of a small U-Net on ``images`` and their dense
    ``objects`` (written to train.tif, train_objects.tif); the model file."""
    write_tiff(tmp_path / "train.tif", images)
    write_tiff(tmp_path / "train_objects.tif", objects)
    small = ["--depth", "3", "--base-channels", "8", "--patch-size", "64", "--batch-size", "4"]
    small += ["--device", "cpu"]
    proc = cli("train", "--images", tmp_path / "train.tif", "--labels", tmp_path / "train_objects.tif",
               "--out", tmp_path / "run", "--objects", "--dense", "--steps", str(steps), *small)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return tmp_path / "run" / "model.pt"


def test_touching_objects_are_learnt_apart_from_the_command_line(tmp_path, cli):
    rng = np.random.default_rng(0)
    objects = np.stack([touching_discs((96, 96), seed=s, n=14) for s in range(4)])
    images = np.stack([nuclei_like(o, rng) for o in objects])
    write_tiff(tmp_path / "test.tif", images[3])
    write_tiff(tmp_path / "truth.tif", objects[3])
    model = train_objects_by_cli(cli, tmp_path, images[:3], objects[:3])
    sizes = np.concatenate([np.bincount(o.ravel())[1:] for o in objects[:3]])
    assert load_model(model).object_size == np.median(sizes[sizes > 0])  # what sets the smallest object
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

    # measure: one row per object, the areas and intensities of the objects
    found = tmp_path / "pred" / "test.tif"
    proc = cli("measure", found, "--image", tmp_path / "test.tif", "--csv", tmp_path / "m.csv")
    assert proc.returncode == 0, proc.stderr
    with open(tmp_path / "m.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["label"]) for r in rows] == sorted(np.unique(predicted[predicted > 0]).tolist())
    biggest = max(rows, key=lambda r: float(r["area"]))
    inside = predicted == int(biggest["label"])
    assert float(biggest["area"]) == inside.sum()
    assert np.isclose(float(biggest["intensity_mean"]), images[3][inside].mean(), rtol=1e-4)


class PixelClasses(torch.nn.Module):
    """A "network" that reads each pixel alone: dark -> background, bright -> interior,
    mid-grey -> boundary. It needs no context, so any tiling gives it the same scores and
    whatever differs between tilings comes from the stitching and the objects' step."""

    spatial_dims = 2

    def forward(self, x):
        centres = torch.tensor([0.0, 1.0, 0.5]).reshape(1, 3, 1, 1)
        return -50 * (x[:, :1] - centres) ** 2


def test_objects_across_tile_seams_are_neither_cut_nor_doubled():
    from napari_unetseg.core.checkpoint import LoadedModel
    from napari_unetseg.core.config import ModelSpec, PredictConfig
    from napari_unetseg.core.instances import CLASS_NAMES, instance_classes
    from napari_unetseg.core.object_sink import object_sink
    from napari_unetseg.core.prediction import predict_stack

    truth = np.stack([touching_discs((160, 160), seed=s, n=40) for s in range(2)])
    classes = np.stack([instance_classes(plane) for plane in truth])
    image = np.choose(classes, [0.0, 1.0, 0.5]).astype(np.float32)[:, None]
    loaded = LoadedModel(PixelClasses(), ModelSpec(), (0, 1, 2), "dense", {"objects": True},
                         class_names=CLASS_NAMES)  # fmt: skip
    results = []
    for tile, overlap in ((1024, None), (48, 16), (64, 32)):  # one tile, then seams every 32 px
        found = np.zeros(truth.shape, np.uint32)
        config = PredictConfig(tile_size=tile, overlap=overlap, device="cpu")
        predict_stack(loaded, image, config, labels_out=object_sink(loaded, found, len(truth)))
        results.append(found)
    seams = np.zeros(truth.shape[1:], bool)
    seams[:, 32::32] = seams[32::32, :] = True
    on_seams = np.unique(truth[:, seams][truth[:, seams] > 0])
    assert len(on_seams) > 20  # many objects lie across the seams of the small tiles
    for found in results:
        assert np.array_equal(found, results[0])
        for z in range(len(truth)):
            assert object_scores(truth[z], found[z]).f1 == 1.0


def touching_balls(shape=(24, 48, 48), seed=0, n=6) -> np.ndarray:
    """Balls of radius 5-8 pressed into each other (the earlier ball keeps the overlap)."""
    rng = np.random.default_rng(seed)
    grid = np.indices(shape)
    out = np.zeros(shape, np.uint16)
    for k in range(n):
        r = int(rng.integers(5, 9))
        centre = [int(rng.integers(r, side - r)) for side in shape]
        ball = sum((g - c) ** 2 for g, c in zip(grid, centre)) <= r * r
        out[ball & (out == 0)] = k + 1
    return out


def test_a_3d_model_learns_3d_objects(tmp_path):
    from napari_unetseg.core.config import ModelSpec, PredictConfig, RunOptions, TrainConfig
    from napari_unetseg.core.events import run_generator
    from napari_unetseg.core.jobs import start_training
    from napari_unetseg.core.object_sink import object_sink
    from napari_unetseg.core.prediction import predict_stack

    rng = np.random.default_rng(0)
    truth = touching_balls()
    image = nuclei_like(truth, rng)[:, None]
    spec = ModelSpec("unet3d", depth=2, base_channels=8)
    config = TrainConfig(objects=True, label_mode="dense", steps=300, patch_size=32, patch_depth=16,
                         batch_size=2, device="cpu")  # fmt: skip
    result = run_generator(start_training([image], [truth], spec, config, RunOptions()).run())
    assert result.loaded.class_names == ("background", "interior", "boundary")
    found = np.zeros(truth.shape, np.uint32)
    sink = object_sink(result.loaded, found, len(truth))
    predict_stack(result.loaded, image, PredictConfig(device="cpu", tile_depth=16), labels_out=sink)
    assert found.max() > 0
    planes_of = [np.unique(np.nonzero(found == i)[0]) for i in np.unique(found[found > 0])]
    assert max(len(p) for p in planes_of) >= 5  # objects are 3D: one id over many planes
    assert object_scores(truth, found).f1 > object_scores(truth, connected_components(truth > 0)).f1


def test_a_2d_model_finds_3d_objects_in_a_z_stack_from_the_command_line(tmp_path, cli):
    """``unetseg predict --objects-3d``: a 2D object model's slice classes joined over the
    z-stack into 3D objects (each ball one id over many planes), where without the flag
    every slice numbers its own."""
    rng = np.random.default_rng(0)
    truth = touching_balls()
    image = nuclei_like(truth, rng)
    for name, array in {"image": image, "truth": truth}.items():
        tifffile.imwrite(tmp_path / f"{name}.tif", array, metadata={"axes": "ZYX"}, photometric="minisblack")
    small = ["--depth", "2", "--base-channels", "8", "--patch-size", "32", "--batch-size", "4"]
    small += ["--device", "cpu"]
    proc = cli("train", "--images", tmp_path / "image.tif", "--labels", tmp_path / "truth.tif",
               "--out", tmp_path / "run", "--objects", "--dense", "--steps", "800", *small)  # fmt: skip
    assert proc.returncode == 0, proc.stderr  # (at 300 steps the model gave its cores almost no voxels)
    found = {}
    for name, flags in {"planes": [], "volume": ["--objects-3d"]}.items():
        proc = cli("predict", "--model", tmp_path / "run" / "model.pt", "--out", tmp_path / name,
                   tmp_path / "image.tif", "--device", "cpu", *flags)  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        found[name] = tifffile.imread(tmp_path / name / "image.tif")
    planes_of = {name: [len(np.unique(np.nonzero(f == i)[0])) for i in np.unique(f[f > 0])]
                 for name, f in found.items()}  # fmt: skip
    assert max(planes_of["planes"]) == 1 and max(planes_of["volume"]) >= 8  # a ball is 11-17 planes deep
    assert found["volume"].max() < found["planes"].max() / 2, {n: f.max() for n, f in found.items()}
    joined, per_slice = (object_scores(truth, found[name]).f1 for name in ("volume", "planes"))
    assert joined > 0.8 and joined > 3 * per_slice, (joined, per_slice)  # seed 0: 1.0 and 0.0

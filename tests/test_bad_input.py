"""Bad input, case by case: the same table through the CLI and through the core API.

Every case must give a one-line message naming the problem and the fix: exit code 2
and one line on stderr from ``unetseg``, a :class:`UserInputError` from the core
functions the CLI calls. In both, the input files stay byte-for-byte as they were and
no output appears. docs/bad-input.md lists the same table.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
import zarr
from ome_zarr.writer import write_image, write_labels

from napari_unetseg.core.class_names import parse_names
from napari_unetseg.core.config import ModelSpec, PredictConfig, TrainConfig
from napari_unetseg.core.errors import UserInputError
from napari_unetseg.core.file_prediction import export_file, predict_files, prune_file
from napari_unetseg.core.sample import make_sample
from napari_unetseg.core.workflows import (
    evaluate_files,
    evaluate_object_files,
    measure_file,
    train_from_files,
)

TINY = {"depth": 2, "base_channels": 4}
FAST = {"steps": 1, "patch_size": 32, "batch_size": 2, "device": "cpu"}
CLI_FAST = ["--steps", "1", "--patch-size", "32", "--batch-size", "2", "--depth", "2", "--base-channels", "4"]


def _tif(path: Path, array: np.ndarray, axes: str | None = None) -> Path:
    metadata = {"axes": axes} if axes else {}  # {}: tifffile still records the shape
    tifffile.imwrite(path, array, metadata=metadata, photometric="minisblack")
    return path


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    """Every input file the cases use, written once (the tests only read them)."""
    d = tmp_path_factory.mktemp("inputs")
    sample = make_sample(n_slices=2, size=64, painted_slices=2, seed=9)
    strokes = sample.strokes
    f = {
        "image": _tif(d / "image.tif", sample.image, "ZYX"),
        "strokes": _tif(d / "strokes.tif", strokes, "ZYX"),
    }
    f["truth"] = _tif(d / "truth.tif", sample.truth, "ZYX")
    f["single"] = _tif(d / "single.tif", sample.image[0], "YX")
    f["single_strokes"] = _tif(d / "single_strokes.tif", strokes[0], "YX")
    f["narrow"] = _tif(d / "narrow.tif", strokes[:, :60], "ZYX")
    f["unpainted"] = _tif(d / "unpainted.tif", np.zeros_like(strokes), "ZYX")
    f["one_class"] = _tif(d / "one_class.tif", np.where(strokes == 2, 0, strokes), "ZYX")
    f["new_class"] = _tif(d / "new_class.tif", np.where(strokes == 2, 3, strokes), "ZYX")
    f["fractional"] = _tif(d / "fractional.tif", strokes.astype(np.float32) * 0.5, "ZYX")
    f["negative"] = _tif(d / "negative.tif", strokes.astype(np.int16) - 1, "ZYX")
    nan = sample.image.astype(np.float32)
    nan[0, 5, 5] = np.nan
    f["nan"] = _tif(d / "nan.tif", nan, "ZYX")
    f["constant"] = _tif(d / "constant.tif", np.full_like(sample.image, 7), "ZYX")
    f["tiny"] = _tif(d / "tiny.tif", np.arange(16, dtype=np.uint16).reshape(4, 4), "YX")
    tiny_labels = np.repeat([[1, 1, 2, 2]], 4, axis=0).astype(np.uint8)
    f["tiny_labels"] = _tif(d / "tiny_labels.tif", tiny_labels, "YX")
    f["six_d"] = _tif(d / "six_d.tif", np.zeros((2, 2, 2, 2, 16, 16), np.uint8))
    f["rgb"] = _tif(d / "rgb.tif", np.zeros((64, 64, 3), np.uint8), "YXC")
    f["rgb_stack"] = _tif(d / "rgb_stack.tif", np.repeat(sample.image[..., None], 3, axis=-1), "ZYXC")
    f["float_prediction"] = _tif(d / "float_prediction.tif", sample.truth.astype(np.float32) + 0.5, "ZYX")
    f["nuclei_mask"] = _tif(d / "nuclei_mask.tif", (sample.truth == 2).astype(np.uint8), "ZYX")
    f["huge_ids"] = _tif(d / "huge_ids.tif", (sample.truth == 2).astype(np.uint64) * 2**33, "ZYX")
    instances = np.zeros((64, 64), np.uint16)
    for k in range(12):  # twelve separate objects
        instances[(k // 4) * 20 + 2 : (k // 4) * 20 + 12, (k % 4) * 16 + 2 : (k % 4) * 16 + 12] = k + 1
    f["instances"] = _tif(d / "instances.tif", instances, "YX")
    f["instances_mask"] = _tif(d / "instances_mask.tif", (instances > 0).astype(np.uint8), "YX")
    (d / "empty.tif").write_bytes(b"")
    f["empty"] = d / "empty.tif"
    f["truncated"] = d / "truncated.tif"
    f["truncated"].write_bytes(f["image"].read_bytes()[:300])
    f["folder"] = d / "folder.tif"
    f["folder"].mkdir()
    f["bad_config"] = d / "config.json"
    f["bad_config"].write_text('{"train": {"steps": 10,}')
    f["unknown_key_config"] = d / "unknown.json"
    f["unknown_key_config"].write_text(json.dumps({"train": {"stepz": 10}}))
    run = d / "run"
    train_from_files([f["image"]], [f["strokes"]], run, model_options=TINY, train_options=FAST)
    f["run"], f["model"] = run, run / "model.pt"
    other = d / "other_run"  # classes 1 and 3 instead of 1 and 2
    train_from_files([f["image"]], [f["new_class"]], other, model_options=TINY, train_options=FAST)
    f["other_classes_model"] = other / "model.pt"
    zoomed = torch.load(f["model"], weights_only=True)
    zoomed["object_zoom"] = 0.5  # as a model that learnt large objects at half their size
    f["zoomed_model"] = d / "zoomed.pt"
    torch.save(zoomed, f["zoomed_model"])
    f["truncated_model"] = d / "truncated.pt"
    f["truncated_model"].write_bytes(f["model"].read_bytes()[:2000])
    newer = torch.load(f["model"], weights_only=True)
    newer["format_version"] = 99
    f["newer_model"] = d / "newer.pt"
    torch.save(newer, f["newer_model"])
    f["plain_zarr"] = d / "plain.zarr"
    zarr.save_array(str(f["plain_zarr"]), sample.image)
    f["ome"] = d / "cells.ome.zarr"  # an OME-Zarr image that holds labels "done" already
    group = zarr.open_group(str(f["ome"]), mode="w")
    write_image(sample.image, group, axes="zyx", scale_factors=(2,))
    write_labels(sample.truth, group, name="done", axes="zyx", scale_factors=(2,))
    f["locked"] = d / "locked.ome.zarr"  # an OME-Zarr image whose labels/ is a file
    write_image(sample.image, zarr.open_group(str(f["locked"]), mode="w"), axes="zyx", scale_factors=(2,))
    (f["locked"] / "labels").write_bytes(b"")
    f["existing_zarr_out"] = d / "existing_zarr_out"
    zarr.save_array(str(f["existing_zarr_out"] / "cells.ome.zarr"), np.zeros((2, 64, 64), np.uint8))
    stack8 = make_sample(n_slices=8, size=64, painted_slices=8, seed=3)
    f["stack8"] = _tif(d / "stack8.tif", stack8.image, "ZYX")
    f["stack8_strokes"] = _tif(d / "stack8_strokes.tif", stack8.strokes, "ZYX")
    model3d = {**TINY, "name": "unet3d"}
    train_from_files([f["stack8"]], [f["stack8_strokes"]], d / "run3d", model_options=model3d,
                     train_options={**FAST, "patch_depth": 4})  # fmt: skip
    f["model3d"] = d / "run3d" / "model.pt"
    train_from_files([f["single"]], [f["instances"]], d / "run_objects", model_options=TINY,
                     train_options={**FAST, "objects": True, "label_mode": "dense"})  # fmt: skip
    f["object_model"] = d / "run_objects" / "model.pt"
    f["foreign"] = d / "foreign.zip"  # a bioimage.io package another tool made
    with zipfile.ZipFile(f["foreign"], "w") as archive:
        archive.writestr("rdf.yaml", "type: model\nweights:\n  torchscript:\n    source: weights.pt\n")
    f["damaged_zip"] = d / "damaged.zip"  # a package cut short in a download
    f["damaged_zip"].write_bytes(f["model"].read_bytes()[:3000])
    f["existing_out"] = d / "existing_out"
    f["existing_out"].mkdir()
    _tif(f["existing_out"] / "image.tif", np.zeros((2, 64, 64), np.uint8), "ZYX")
    return f


@dataclass(frozen=True)
class Case:
    """One bad input: CLI arguments, the equivalent core call, and the expected message."""

    name: str
    cli: list[str]
    core: Callable[[dict, Path], object]
    message: str
    flag: str = ""  # what the CLI's message must name (the core's names no flag)


def _train(f, out, images="image", labels="strokes", model=None, train=None, **options):
    return train_from_files([f[images]], [f[labels]], out / "run", model_options={**TINY, **(model or {})},
                            train_options={**FAST, **(train or {})}, **options)  # fmt: skip


def _predict(f, out, inputs=("image",), model="model", **options):
    return predict_files(f[model], [f[i] for i in inputs], out / "pred", **options)


TRAIN = ["train", "--images", "{image}", "--labels", "{strokes}", "--out", "{out}/run", *CLI_FAST]
PREDICT = ["predict", "--model", "{model}", "--out", "{out}/pred", "{image}"]
OBJECT_PREDICT = ["predict", "--model", "{object_model}", "--out", "{out}/pred"]


def _swap(args, old, new):
    return [new if a == old else a for a in args]


CASES = [
    Case("image and labels of different shapes", _swap(TRAIN, "{strokes}", "{narrow}"),
         lambda f, o: _train(f, o, labels="narrow"), "does not match", "(--axes)"),
    Case("labels with no painted pixel", _swap(TRAIN, "{strokes}", "{unpainted}"),
         lambda f, o: _train(f, o, labels="unpainted"), "no painted pixels"),
    Case("one class only", _swap(TRAIN, "{strokes}", "{one_class}"),
         lambda f, o: _train(f, o, labels="one_class"), "only one class"),
    Case("labels with a class the model file does not know (resume)",
         ["train", "--images", "{image}", "--labels", "{new_class}", "--resume", "{run}", "--steps", "5"],
         lambda f, o: train_from_files([f["image"]], [f["new_class"]], None, resume=f["run"],
                                       train_options={"steps": 5}), "cannot add classes", "(--init)"),
    Case("fractional float labels", _swap(TRAIN, "{strokes}", "{fractional}"),
         lambda f, o: _train(f, o, labels="fractional"), "must be integers"),
    Case("negative label values", _swap(TRAIN, "{strokes}", "{negative}"),
         lambda f, o: _train(f, o, labels="negative"), "negative values"),
    Case("NaN in the image", _swap(TRAIN, "{image}", "{nan}"),
         lambda f, o: _train(f, o, images="nan"), "NaN or infinite"),
    Case("constant image", _swap(TRAIN, "{image}", "{constant}"),
         lambda f, o: _train(f, o, images="constant"), "is constant", "(--axes)"),
    Case("4x4 image (training)",
         ["train", "--images", "{tiny}", "--labels", "{tiny_labels}", "--out", "{out}/run", "--dense"],
         lambda f, o: _train(f, o, images="tiny", labels="tiny_labels", train={"label_mode": "dense"}),
         "too small", "(--axes)"),
    Case("4x4 image (prediction)", _swap(PREDICT, "{image}", "{tiny}"),
         lambda f, o: _predict(f, o, inputs=("tiny",)), "too small", "(--axes)"),
    Case("unknown letter in the axes", [*TRAIN, "--axes", "ZQX"],
         lambda f, o: _train(f, o, axes="ZQX"), "unknown letter"),
    Case("axes of the wrong length", [*TRAIN, "--axes", "TZYX"],
         lambda f, o: _train(f, o, axes="TZYX"), "4 letters"),
    Case("6-D image", _swap(PREDICT, "{image}", "{six_d}"),
         lambda f, o: _predict(f, o, inputs=("six_d",)), "6-D", "(--axes)"),
    Case("RGB image for a grey model", _swap(PREDICT, "{image}", "{rgb}"),
         lambda f, o: _predict(f, o, inputs=("rgb",)), "3 channel(s) but the model expects 1", "(--axes)"),
    Case("empty file", _swap(TRAIN, "{image}", "{empty}"),
         lambda f, o: _train(f, o, images="empty"), "is empty"),
    Case("truncated TIFF", _swap(PREDICT, "{image}", "{truncated}"),
         lambda f, o: _predict(f, o, inputs=("truncated",)), "cannot read"),
    Case("a folder where a file is expected", _swap(TRAIN, "{image}", "{folder}"),
         lambda f, o: _train(f, o, images="folder"), "is a directory"),
    Case("output folder inside a file", _swap(PREDICT, "{out}/pred", "{image}/pred"),
         lambda f, o: predict_files(f["model"], [f["image"]], f["image"] / "pred"), "is a file", "(--out)"),
    Case("existing output without --overwrite", _swap(PREDICT, "{out}/pred", "{existing_out}"),
         lambda f, o: predict_files(f["model"], [f["image"]], f["existing_out"]), "already exists",
         "replace it (--overwrite)"),
    Case("zarr array without axes metadata", _swap(PREDICT, "{image}", "{plain_zarr}"),
         lambda f, o: _predict(f, o, inputs=("plain_zarr",)), "has no axes metadata", "(--axes)"),
    Case("labels name taken in the OME-Zarr input", ["predict", "--model", "{model}", "--label-name", "done",
                                                     "{ome}"],
         lambda f, o: predict_files(f["model"], [f["ome"]], None, label_name="done"), "already exists",
         "choose another name (--label-name) or replace it (--overwrite)"),
    Case("labels name for a TIFF input", ["predict", "--model", "{model}", "--label-name", "x", "{image}"],
         lambda f, o: predict_files(f["model"], [f["image"]], None, label_name="x"), "needs OME-Zarr inputs",
         "--label-name needs"),
    Case("labels group of the OME-Zarr input not writable",
         ["predict", "--model", "{model}", "--label-name", "x", "{locked}"],
         lambda f, o: predict_files(f["model"], [f["locked"]], None, label_name="x"),
         "cannot write labels into", "write them to an output folder instead (--out)"),
    Case("existing output store without --overwrite",
         ["predict", "--model", "{model}", "--out", "{existing_zarr_out}", "{ome}"],
         lambda f, o: predict_files(f["model"], [f["ome"]], f["existing_zarr_out"]), "already exists",
         "replace it (--overwrite)"),
    Case("unreachable dask scheduler", [*PREDICT, "--dask", "tcp://127.0.0.1:9"],
         lambda f, o: _predict(f, o, dask="tcp://127.0.0.1:9"), "cannot reach a dask scheduler",
         "start a scheduler (docs/cluster.md) (--dask)"),
    Case("dask address of no known kind", [*PREDICT, "--dask", "cluster7"],
         lambda f, o: _predict(f, o, dask="cluster7"), "is neither local:N nor a scheduler address",
         "(--dask)"),
    Case("local dask cluster of no worker", [*PREDICT, "--dask", "local:0"],
         lambda f, o: _predict(f, o, dask="local:0"), "starts no worker", "--dask local:0"),
    Case("dask blocks thinner than the 3D model's tiles",
         [*_swap(_swap(PREDICT, "{model}", "{model3d}"), "{image}", "{stack8}"), "--dask", "local:1",
          "--block-depth", "8", "--tile-depth", "16"],
         lambda f, o: _predict(f, o, inputs=("stack8",), model="model3d", dask="local:1",
                               config=PredictConfig(block_depth=8, tile_depth=16)),
         "thinner than the 3D model's",
         "make them thicker (--block-depth) or use thinner tiles (--tile-depth)"),
    Case("bioimage.io package not exported by napari-unetseg", _swap(PREDICT, "{model}", "{foreign}"),
         lambda f, o: _predict(f, o, model="foreign"), "was not exported by napari-unetseg"),
    Case("damaged model package (a truncated zip)", _swap(PREDICT, "{model}", "{damaged_zip}"),
         lambda f, o: _predict(f, o, model="damaged_zip"), "is damaged or truncated"),
    Case("unknown starter model", [*TRAIN, "--init", "starter:mitochondria"],
         lambda f, o: _train(f, o, init="starter:mitochondria"), "unknown starter 'mitochondria'"),
    Case("model to start from with other channels", [*_swap(TRAIN, "{image}", "{rgb_stack}"),
                                                     "--init", "{model}", "--axes", "ZYXC"],
         lambda f, o: _train(f, o, images="rgb_stack", init=f["model"], axes="ZYXC"),
         "takes 1 channel(s) but the images have 3", "(--init)"),
    Case("export to a name that is not .zip", ["export", "{model}", "{out}/model.tif"],
         lambda f, o: export_file(f["model"], o / "model.tif"), "is not a .zip file name", "(OUT.zip)"),
    Case("export sample of other channels", ["export", "{model}", "{out}/model.zip", "--sample", "{rgb}"],
         lambda f, o: export_file(f["model"], o / "model.zip", f["rgb"]), "the model takes 1 channel(s)",
         "(--sample)"),
    Case("no output given", ["predict", "--model", "{model}", "{image}"],
         lambda f, o: predict_files(f["model"], [f["image"]], None), "no output is given",
         "(--out) or a name for labels inside OME-Zarr inputs (--label-name)"),
    Case("run folder that already holds a model", _swap(TRAIN, "{out}/run", "{run}"),
         lambda f, o: train_from_files([f["image"]], [f["strokes"]], f["run"], model_options=TINY,
                                       train_options=FAST), "already holds a model",
         "resume it (--resume), choose another run folder (--out) or overwrite it (--overwrite)"),
    Case("truncated model file", _swap(PREDICT, "{model}", "{truncated_model}"),
         lambda f, o: _predict(f, o, model="truncated_model"), "damaged or truncated"),
    Case("model file from a newer version", _swap(PREDICT, "{model}", "{newer_model}"),
         lambda f, o: _predict(f, o, model="newer_model"), "upgrade napari-unetseg"),
    Case("not a model file", _swap(PREDICT, "{model}", "{image}"),
         lambda f, o: _predict(f, o, model="image"), "not a napari-unetseg model file"),
    Case("ensemble of models with different classes", [*PREDICT, "--model", "{other_classes_model}"],
         lambda f, o: predict_files([f["model"], f["other_classes_model"]], [f["image"]], o / "pred"),
         "an ensemble needs models trained on the same classes"),
    Case("ensemble of models that learnt at different zooms", [*PREDICT, "--model", "{zoomed_model}"],
         lambda f, o: predict_files([f["model"], f["zoomed_model"]], [f["image"]], o / "pred"),
         "an ensemble needs models trained on objects of the same size"),
    Case("zero steps", [*TRAIN, "--steps", "0"],
         lambda f, o: _train(f, o, train={"steps": 0}), "must be a number >= 1, got 0", "--steps must"),
    Case("negative steps", [*TRAIN, "--steps", "-5"],
         lambda f, o: _train(f, o, train={"steps": -5}), "must be a number >= 1, got -5", "--steps must"),
    Case("patch larger than the image", [*TRAIN, "--patch-size", "128"],
         lambda f, o: _train(f, o, train={"patch_size": 128}), "patch size of 64 or less",
         "(--patch-size)"),
    Case("overlap as large as the tile", [*PREDICT, "--tile-size", "256", "--overlap", "256"],
         lambda f, o: PredictConfig(tile_size=256, overlap=256), "leaves no step between 256-px tiles"),
    Case("fractional overlap above 1", [*PREDICT, "--overlap", "1.5"],
         lambda f, o: PredictConfig(overlap=1.5), "a whole number of pixels, got 1.5"),
    Case("tile smaller than 16 px", [*PREDICT, "--tile-size", "8"],
         lambda f, o: PredictConfig(tile_size=8), "must be a number >= 16, got 8", "--tile-size must"),
    Case("zero batch size", [*TRAIN, "--batch-size", "0"],
         lambda f, o: TrainConfig(batch_size=0), "must be a number >= 1, got 0", "--batch-size must"),
    Case("negative learning rate", [*TRAIN, "--lr", "-0.1"],
         lambda f, o: TrainConfig(learning_rate=-0.1), "must be a number >= 1e-12", "--lr must"),
    Case("unknown architecture", [*TRAIN, "--model", "vgg"],
         lambda f, o: _train(f, o, model={"name": "vgg"}), "unknown model", "(--model)"),
    Case("more class names than classes", [*TRAIN, "--class-names", "background,nucleus,debris"],
         lambda f, o: _train(f, o, class_names=["background", "nucleus", "debris"]),
         "3 class names for 2 classes", "(--class-names)"),
    Case("an empty or repeated class name", [*TRAIN, "--class-names", "background,,nucleus"],
         lambda f, o: _train(f, o, class_names=parse_names("background,,nucleus")),
         "must be distinct and separated by commas", "(--class-names)"),
    Case("class mask given to an object evaluation",
         ["evaluate", "--objects", "--prediction", "{nuclei_mask}", "--truth", "{nuclei_mask}"],
         lambda f, o: evaluate_object_files(f["nuclei_mask"], f["nuclei_mask"]), "looks like a class mask",
         "(--objects)"),
    Case("object ids above 2**32",
         ["evaluate", "--objects", "--prediction", "{huge_ids}", "--truth", "{huge_ids}"],
         lambda f, o: evaluate_object_files(f["huge_ids"], f["huge_ids"]), "above 2**32"),
    Case("object ids given to a class evaluation",
         ["evaluate", "--prediction", "{instances_mask}", "--truth", "{instances}"],
         lambda f, o: evaluate_files(f["instances_mask"], f["instances"]),
         "ground truth looks like object ids", "(--objects)"),
    Case("class strokes given as objects", [*TRAIN, "--objects"],
         lambda f, o: _train(f, o, train={"objects": True}),
         "several separate pieces, as strokes of a class"),
    Case("background strokes only, no object painted",
         [*_swap(TRAIN, "{strokes}", "{one_class}"), "--objects"],
         lambda f, o: _train(f, o, labels="one_class", train={"objects": True}), "no object is painted"),
    Case("objects and an image of other shapes to measure",
         ["measure", "{instances}", "--image", "{image}", "--csv", "{out}/objects.csv"],
         lambda f, o: measure_file(f["instances"], o / "objects.csv", f["image"]), "differ in shape"),
    Case("a class mask asked of a class model", [*PREDICT, "--semantic"],
         lambda f, o: _predict(f, o, semantic=True), "is for models trained on objects", "--semantic is"),
    Case("3D objects asked of a class model", [*PREDICT, "--objects-3d"],
         lambda f, o: _predict(f, o, objects_3d=True), "is for models trained on objects", "--objects-3d is"),
    Case("3D objects and the classes together", [*OBJECT_PREDICT, "{image}", "--objects-3d", "--semantic"],
         lambda f, o: _predict(f, o, model="object_model", objects_3d=True, semantic=True),
         "classes are asked for too", "(--semantic)"),
    Case("3D objects of an image without Z", [*OBJECT_PREDICT, "{single}", "--objects-3d"],
         lambda f, o: _predict(f, o, ("single",), "object_model", objects_3d=True),
         "joins the slices of one z-stack into 3D objects", "(--axes)"),
    Case("float prediction to evaluate",
         ["evaluate", "--prediction", "{float_prediction}", "--truth", "{truth}"],
         lambda f, o: evaluate_files(f["float_prediction"], f["truth"]), "integer label image"),
    Case("prediction and truth of different shapes",
         ["evaluate", "--prediction", "{narrow}", "--truth", "{truth}"],
         lambda f, o: evaluate_files(f["narrow"], f["truth"]), "differs from ground truth"),
    Case("--resume and --init together", [*TRAIN, "--resume", "{run}", "--init", "{model}"],
         lambda f, o: train_from_files([f["image"]], [f["strokes"]], None, resume=f["run"], init=f["model"]),
         "not both", "(--resume)"),
    Case("malformed config file", [*TRAIN, "--config", "{bad_config}"],
         lambda f, o: _train(f, o, config_file=f["bad_config"]), "config"),
    Case("unknown option in a config file", [*TRAIN, "--config", "{unknown_key_config}"],
         lambda f, o: _train(f, o, config_file=f["unknown_key_config"]), "stepz"),
    Case("missing input file", _swap(PREDICT, "{image}", "{out}/nope.tif"),
         lambda f, o: predict_files(f["model"], [o / "nope.tif"], o / "pred"), "does not exist"),
    Case("3D model on a single image",
         [*_swap(_swap(TRAIN, "{image}", "{single}"), "{strokes}", "{single_strokes}"), "--model", "unet3d"],
         lambda f, o: _train(f, o, "single", "single_strokes", model={"name": "unet3d"}), "z-stacks",
         "use a 2D model (--model)"),
    Case("zero anisotropy", [*TRAIN, "--anisotropy", "0"],
         lambda f, o: ModelSpec(anisotropy=0), "must be a number >= 0.01", "--anisotropy must"),
    Case("pruning a model that is not a UNet++",
         ["prune", "--model", "{model}", "--head", "1", "--out", "{out}/pruned.pt"],
         lambda f, o: prune_file(f["model"], 1, o / "pruned.pt"), "only UNet++"),
]  # fmt: skip


def _fingerprint(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_the_table_is_long_enough_and_documented():
    assert len(CASES) >= 25 and len({c.name for c in CASES}) == len(CASES)
    doc = (Path(__file__).parents[1] / "docs" / "bad-input.md").read_text()
    assert all(f"| {c.name} |" in doc for c in CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_core_api(case, inputs, tmp_path):
    before = _fingerprint(inputs["image"].parent)
    with pytest.raises(UserInputError) as info:
        case.core(inputs, tmp_path)
    message = str(info.value)
    assert case.message in message and "\n" not in message
    assert "--" not in message  # the core names no flags: each front words its options itself
    assert _fingerprint(inputs["image"].parent) == before
    assert not any(tmp_path.iterdir())  # no output appeared


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_cli(case, inputs, tmp_path, cli):
    before = _fingerprint(inputs["image"].parent)
    out = tmp_path / "out"
    out.mkdir()
    proc = cli(*[a.format(**inputs, out=out) for a in case.cli])
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and case.message in lines[0] and "Traceback" not in proc.stderr, proc.stderr
    assert case.flag in lines[0], lines[0]
    assert _fingerprint(inputs["image"].parent) == before
    assert not any(out.iterdir())

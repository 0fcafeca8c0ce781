"""``unetseg``: the command line over the core engine.

Each sub-command parses its flags into core config objects and calls one core
function. Every default comes from the config classes in
:mod:`napari_unetseg.core.config`: a flag left out is ``None`` here and the class's
default applies. Exit codes: 0 ok, 2 bad input (one line on stderr, naming the flags
to change), 1 internal error, 130 interrupted.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
import warnings
from collections.abc import Sequence
from dataclasses import fields
from typing import Any

from napari_unetseg import __version__
from napari_unetseg.cli._parsing import finish as _finish
from napari_unetseg.cli.exchange import add_export, add_starters
from napari_unetseg.core.class_names import parse_names
from napari_unetseg.core.config import (
    AUTO_START,
    AUTO_START_FIT,
    AdvancedOptions,
    ModelSpec,
    PredictConfig,
    TrainConfig,
    defaults,
)
from napari_unetseg.core.errors import UserInputError

MODEL = defaults(ModelSpec)
TRAIN = defaults(TrainConfig)
PREDICT = defaults(PredictConfig)
MODEL_FLAGS = ("depth", "base_channels", "norm", "upsample", "deep_supervision", "anisotropy")


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a model on images and (sparse or dense) labels",
        description="Train a U-Net/UNet++ on one or more (image, labels) pairs.",
    )
    p.add_argument("--images", nargs="+", required=True, metavar="IMG", help="image files (TIFF/OME-TIFF)")
    p.add_argument("--labels", nargs="+", required=True, metavar="LBL", help="label files, one per image")
    p.add_argument("--out", metavar="RUN_DIR", help="run folder for model.pt, config.json, history")
    p.add_argument("--axes", help="axes of the images, e.g. ZYX, TCYX, YXC (default: from metadata)")
    p.add_argument("--label-axes", help="axes of the label files (default: from metadata)")
    p.add_argument(
        "--class-names",
        metavar="NAMES",
        help="what the classes are called, in the order of the label values, e.g. background,nucleus",
    )
    _add_model_flags(p)
    _add_recipe_flags(p)
    p.add_argument(
        "--init",
        metavar="MODEL_FILE",
        help="fine-tune from this model file, bioimage.io package or starter:NAME (unetseg starters), or "
        f"'{AUTO_START}': a starter that already gives {100 * AUTO_START_FIT:.0f} %% of the painted pixels "
        "their class, else random weights (default: random weights)",
    )
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a stopped run")
    p.add_argument(
        "--config", metavar="FILE", help="JSON/TOML file with [model], [train] and [train.advanced] sections"
    )
    p.add_argument("--overwrite", action="store_true", help="allow a run folder that holds a model")
    _finish(p, _run_train)


def _add_model_flags(p: argparse.ArgumentParser) -> None:
    """``unetseg train``'s ModelSpec flags."""
    p.add_argument(
        "--model",
        help=f"architecture (default {MODEL['name']}): unet, unetplusplus, unet3plus, fcn8s, fcn16s, "
        "fcn32s, deeplabv3plus, unet3d, unetplusplus3d (see `unetseg models`)",
    )
    p.add_argument("--depth", type=int, help=f"down-sampling steps (default {MODEL['depth']})")
    p.add_argument(
        "--base-channels", type=int, help=f"width of the first level (default {MODEL['base_channels']})"
    )
    p.add_argument("--norm", help=f"batch, instance, group or none (default {MODEL['norm']})")
    p.add_argument("--upsample", help=f"bilinear or transpose (U-Net; default {MODEL['upsample']})")
    p.add_argument(
        "--anisotropy",
        type=float,
        help="3D models: z step over pixel size (e.g. 4); z is not pooled until voxels are ~cubic",
    )
    p.add_argument(
        "--no-deep-supervision",
        dest="deep_supervision",
        action="store_const",
        const=False,
        help="UNet++ / UNet 3+: train only the last head",
    )


def _add_recipe_flags(p: argparse.ArgumentParser) -> None:
    """``unetseg train``'s TrainConfig flags (one per top-level field, and --try-steps)."""
    mode = p.add_mutually_exclusive_group()
    for value, text in (
        ("sparse", "label 0 = unpainted, ignored"),
        ("dense", "label 0 = background, a class"),
    ):
        default = " (default)" if value == TRAIN["label_mode"] else ""
        mode.add_argument(
            f"--{value}", dest="label_mode", action="store_const", const=value, help=text + default
        )
    p.add_argument(
        "--objects",
        action="store_const",
        const=True,
        help="the labels are objects: with --dense one id per object, 0 = background; sparse, "
        "1 = background strokes, 2, 3, ... = objects painted whole. Learns to separate touching "
        "objects; predict then writes object ids",
    )
    p.add_argument("--steps", type=int, help=f"total optimisation steps (default {TRAIN['steps']})")
    p.add_argument(
        "--patch-size", type=int, help=f"training patch side in pixels (default {TRAIN['patch_size']})"
    )
    p.add_argument(
        "--patch-depth", type=int, help=f"3D models: patch depth in slices (default {TRAIN['patch_depth']})"
    )
    p.add_argument("--batch-size", type=int, help=f"patches per step (default {TRAIN['batch_size']})")
    p.add_argument(
        "--lr", dest="learning_rate", type=float, help=f"learning rate (default {TRAIN['learning_rate']:g})"
    )
    p.add_argument("--seed", type=int, help=f"random seed (default {TRAIN['seed']})")
    p.add_argument(
        "--tries",
        type=int,
        help="start this many runs (seeds SEED, SEED+1, ...) and keep the one whose training loss "
        f"is lowest after --try-steps (default {TRAIN['tries']})",
    )
    p.add_argument("--try-steps", type=int, help="steps of each try (default: a quarter of --steps)")
    p.add_argument(
        "--learn-unpainted",
        action="store_const",
        const=True,
        help="sparse labels: also learn from the unpainted pixels (flip/rot90/zoom consistency): "
        "for thin structures such as membranes, not for nuclei; each step costs about twice as much",
    )
    p.add_argument(
        "--steps-per-epoch", type=int, help="steps between model files (default: steps/4, at most 50)"
    )
    p.add_argument(
        "--validation-fraction",
        type=float,
        help=f"held-out labelled slices (default {TRAIN['validation_fraction']})",
    )
    p.add_argument("--device", help=f"auto, cpu, cuda or mps (default {TRAIN['device']})")
    p.add_argument("--precision", help=f"auto, fp32, bf16 or fp16 (default {TRAIN['precision']})")


def _add_predict(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict",
        help="segment images with a model file",
        description="Tiled prediction: writes OUT_DIR/<input name>.tif label images (.ome.zarr "
        "stores for zarr inputs), or with --label-name into each OME-Zarr input's labels/ group.",
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or zarr / OME-Zarr stores")
    p.add_argument(
        "--model",
        required=True,
        action="append",
        metavar="MODEL_FILE",
        help="model.pt (or its run folder); repeat --model for an ensemble that averages "
        "the models' probabilities",
    )
    p.add_argument("--out", metavar="OUT_DIR", help="output folder")
    p.add_argument(
        "--label-name",
        metavar="NAME",
        help="OME-Zarr inputs: write the labels into the input's labels/NAME (napari-ome-zarr "
        "shows them over the image) instead of OUT_DIR",
    )
    p.add_argument("--axes", help="axes of the inputs (default: from metadata)")
    p.add_argument(
        "--tile-size", type=int, help=f"largest tile side in pixels (default {PREDICT['tile_size']})"
    )
    p.add_argument(
        "--overlap",
        type=float,
        help="overlap of neighbouring tiles: pixels, or a fraction of the tile if below 1 "
        "(default 64, a quarter of tiles under 256)",
    )
    p.add_argument("--batch-size", type=int, help=f"tiles per forward pass (default {PREDICT['batch_size']})")
    p.add_argument(
        "--tile-depth", type=int, help=f"3D models: tile depth in slices (default {PREDICT['tile_depth']})"
    )
    p.add_argument("--blending", help=f"gaussian or constant (default {PREDICT['blending']})")
    p.add_argument("--tta", action="store_const", const=True, help="average over flips (4x slower)")
    p.add_argument(
        "--no-size-match",
        dest="match_size",
        action="store_const",
        const=False,
        help="a 2D model trained with --objects: keep every image at its scale (by default an image "
        "whose objects are far smaller or larger than those the model learnt is predicted again, zoomed)",
    )
    p.add_argument("--probabilities", action="store_true", help="also write <name>_probabilities.tif")
    p.add_argument(
        "--semantic",
        action="store_true",
        help="a model trained with --objects: write its classes (background, interior, boundary)",
    )
    p.add_argument(
        "--objects-3d",
        action="store_true",
        help="a 2D model trained with --objects on z-stacks: 3D objects (the slices' classes joined "
        "into one volume, then one 3D watershed) instead of each slice's own; 3D models always do",
    )
    p.add_argument("--head", type=int, help="UNet++: predict from head L1..L4 (pruned)")
    p.add_argument("--device", help=f"auto, cpu, cuda or mps (default {PREDICT['device']})")
    p.add_argument("--precision", help=f"auto, fp32, bf16 or fp16 (default {PREDICT['precision']})")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument(
        "--dask",
        metavar="CLUSTER",
        help="predict block by block on dask: local:N starts N worker processes here, tcp://HOST:PORT "
        "uses a running scheduler (docs/cluster.md); the same command again finishes a stopped run",
    )
    p.add_argument(
        "--block-size",
        type=int,
        help=f"--dask: block side in pixels, a few tiles (default {PREDICT['block_size']})",
    )
    p.add_argument(
        "--block-depth",
        type=int,
        help=f"--dask with a 3D model: block depth in slices (default {PREDICT['block_depth']})",
    )
    _finish(p, _run_predict)


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="score a prediction against ground truth",
        description="Dice, IoU, precision, recall, F1, Hausdorff and HD95 per class.",
    )
    p.add_argument("--prediction", required=True, metavar="P", help="predicted label image")
    p.add_argument("--truth", required=True, metavar="T", help="ground-truth label image")
    p.add_argument("--classes", type=int, nargs="+", help="label values to score (default: all)")
    p.add_argument(
        "--ignore",
        type=int,
        nargs="+",
        default=[],
        help="truth values whose pixels are left out of every metric",
    )
    p.add_argument(
        "--class-names",
        metavar="NAMES",
        help="names of the scored classes in value order, e.g. background,nucleus "
        "(default: the names in the prediction file)",
    )
    p.add_argument("--json", metavar="FILE", help="write all metrics as JSON")
    p.add_argument("--csv", metavar="FILE", help="write per-class and per-slice metrics as CSV")
    p.add_argument("--no-surface", dest="surface", action="store_false", help="skip Hausdorff/HD95")
    p.add_argument(
        "--objects",
        action="store_true",
        help="both files hold object ids (0 = background): score objects one to one (F1 at IoU 0.5, "
        "AP over IoU 0.5:0.95, panoptic quality, splits, merges), plane by plane or as a Z volume",
    )
    p.add_argument("--overwrite", action="store_true", help="replace existing JSON/CSV files")
    _finish(p, _run_evaluate)


def _add_measure(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "measure",
        help="measure every object of an object image (CSV)",
        description="One CSV row per object (scikit-image regionprops): area, centroid, bounding box, "
        "eccentricity (2D) or axis lengths (3D), and with --image mean and max intensity; plane by "
        "plane, or as 3D objects when the file has a Z axis.",
    )
    p.add_argument("objects", metavar="OBJECTS", help="object image (one id per object, 0 = background)")
    p.add_argument("--image", metavar="IMG", help="the image to read intensities from")
    p.add_argument("--axes", help="axes of the image (default: from metadata)")
    p.add_argument("--csv", required=True, metavar="FILE", help="the table to write")
    p.add_argument("--overwrite", action="store_true", help="replace an existing CSV file")
    _finish(p, _run_measure)


def _add_demo(sub: argparse._SubParsersAction) -> None:
    from napari_unetseg.core.demo import DEMO_OUT, DEMO_STEPS

    p = sub.add_parser(
        "demo",
        help="train on the built-in sample, predict, print Dice/IoU",
        description="Generate the synthetic sample stack, train the default U-Net on its painted "
        "strokes, predict the whole stack and score it against the ground truth.",
    )
    p.add_argument("--out", default=DEMO_OUT, help=f"demo folder (default ./{DEMO_OUT})")
    p.add_argument("--steps", type=int, default=DEMO_STEPS, help=f"training steps (default {DEMO_STEPS})")
    p.add_argument("--device", default=TRAIN["device"], help="auto, cpu, cuda or mps")
    _finish(p, _run_demo)


def _add_prune(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "prune",
        help="cut a UNet++ model file down to one head (faster prediction)",
        description="Save a UNet++ (trained with deep supervision) pruned to head L1..L4: "
        "the new model file predicts from that head and holds only the nodes it needs.",
    )
    p.add_argument("--model", required=True, metavar="MODEL_FILE", help="model.pt (or its run folder)")
    p.add_argument("--head", required=True, type=int, help="head to keep: 1 (fastest) .. depth (full)")
    p.add_argument("--out", required=True, metavar="FILE", help="the pruned model file to write")
    p.add_argument("--overwrite", action="store_true", help="replace an existing file")
    _finish(p, _run_prune)


def _add_models(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list the available architectures")
    _finish(p, _run_models)


def build_parser() -> argparse.ArgumentParser:
    """The ``unetseg`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="unetseg",
        description="Train U-Net/UNet++ on painted labels, segment stacks, score them.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an internal error")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands = (
        _add_train,
        _add_predict,
        _add_evaluate,
        _add_measure,
        _add_prune,
        add_export,
        add_starters,
        _add_demo,
        _add_models,
    )
    for add in commands:
        add(sub)
    return parser


def train_options(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ``model`` and ``train`` sections the flags give (``None``: not given)."""
    model = {"name": args.model, **{key: getattr(args, key) for key in MODEL_FLAGS}}
    train: dict[str, Any] = {
        f.name: getattr(args, f.name) for f in fields(TrainConfig) if hasattr(args, f.name)
    }
    train["advanced"] = {
        f.name: getattr(args, f.name) for f in fields(AdvancedOptions) if hasattr(args, f.name)
    }
    return model, train


def predict_config(args: argparse.Namespace) -> PredictConfig:
    """The :class:`PredictConfig` of the flags given (the class's defaults for the others)."""
    given = {
        f.name: getattr(args, f.name)
        for f in fields(PredictConfig)
        if getattr(args, f.name, None) is not None
    }
    return PredictConfig(**given)


def _run_train(args: argparse.Namespace) -> int:
    from napari_unetseg.cli.progress import train_printer
    from napari_unetseg.core import parallel
    from napari_unetseg.core.workflows import train_from_files

    model_options, options = train_options(args)
    parallel.init_from_environment()  # under torchrun: one of several ranks (docs/cluster.md)
    main_rank = parallel.is_main()  # the other ranks train silently
    rank, ranks = parallel.rank_and_size()
    if main_rank and ranks > 1:
        print(f"training on {ranks} processes (torch.distributed)", file=sys.stderr)
    try:
        result = train_from_files(
            args.images,
            args.labels,
            args.out,
            model_options,
            options,
            axes=args.axes,
            label_axes=args.label_axes,
            config_file=args.config,
            init=args.init,
            resume=args.resume,
            overwrite=args.overwrite,
            on_event=train_printer() if main_rank else None,
            class_names=parse_names(args.class_names),
        )
    finally:
        parallel.finish()
    if main_rank:
        state = "stopped" if result.stopped else "finished"
        print(f"training {state} at step {result.loaded.step}: {result.run_dir / 'model.pt'}")
    return 0


def _run_predict(args: argparse.Namespace) -> int:
    from napari_unetseg.cli.progress import predict_printer
    from napari_unetseg.core.file_prediction import predict_files

    written = predict_files(
        args.model,
        args.inputs,
        args.out,
        predict_config(args),
        axes=args.axes,
        head=args.head,
        probabilities=args.probabilities,
        overwrite=args.overwrite,
        on_event=predict_printer(),
        semantic=args.semantic,
        objects_3d=args.objects_3d,
        label_name=args.label_name,
        dask=args.dask,
    )
    for path in written:
        print(path)
    return 0


def _run_evaluate(args: argparse.Namespace) -> int:
    from napari_unetseg.core.metrics import format_table
    from napari_unetseg.core.workflows import evaluate_files, write_evaluation

    if args.objects:
        return _run_evaluate_objects(args)
    names = parse_names(args.class_names)
    result = evaluate_files(args.prediction, args.truth, args.classes, args.ignore, args.surface, names)
    write_evaluation(result, args.json, args.csv, overwrite=args.overwrite)
    for warning in result.warnings:
        print(f"unetseg evaluate: warning: {warning}", file=sys.stderr)
    print(format_table(result))
    return 0


def _run_evaluate_objects(args: argparse.Namespace) -> int:
    from napari_unetseg.core.objects import format_object_table
    from napari_unetseg.core.workflows import evaluate_object_files, write_object_evaluation

    for option in ("classes", "ignore", "class_names"):
        if getattr(args, option):
            raise UserInputError("is for class scores: object scores take every object", subject=option)
    result = evaluate_object_files(args.prediction, args.truth)
    write_object_evaluation(result, args.json, args.csv, overwrite=args.overwrite)
    print(format_object_table(result))
    return 0


def _run_measure(args: argparse.Namespace) -> int:
    import numpy as np

    from napari_unetseg.core.workflows import measure_file

    columns = measure_file(args.objects, args.csv, args.image, args.axes, args.overwrite)
    count = len(columns["label"])
    unit = "px" if "plane" in columns else "voxels"  # plane by plane, or 3D objects
    median = f", median size {np.median(columns['area']):.0f} {unit}" if count else ""
    print(f"{count} objects{median}: {args.csv}")
    return 0


def _run_demo(args: argparse.Namespace) -> int:
    from napari_unetseg.cli.progress import demo_printer
    from napari_unetseg.core.demo import run_demo
    from napari_unetseg.core.metrics import format_table

    print(
        f"unetseg demo: sample stack, {args.steps} training steps on painted strokes, "
        f"prediction and scores in {args.out}/",
        file=sys.stderr,
    )
    result = run_demo(args.out, steps=args.steps, device=args.device, on_event=demo_printer())
    print(format_table(result))
    fg = result.per_class.get(2)
    if fg is not None:
        print(f"nucleus class (2): Dice {fg['dice']:.3f}  IoU {fg['iou']:.3f}")
    return 0


def _run_prune(args: argparse.Namespace) -> int:
    from napari_unetseg.core.file_prediction import prune_file

    print(prune_file(args.model, args.head, args.out, overwrite=args.overwrite))
    return 0


def _run_models(args: argparse.Namespace) -> int:
    from napari_unetseg.core.models import available_models, parameter_count

    for name, description in available_models().items():
        size = parameter_count(ModelSpec(name=name)) / 1e6
        print(f"{name:<14} {size:6.1f} M  {description}")
    print(
        f"(parameters at the defaults: base width {MODEL['base_channels']}, depth {MODEL['depth']}, "
        f"{MODEL['in_channels']} channel, {MODEL['num_classes']} classes)"
    )
    return 0


def _one_line_warning(command: str):
    """Warnings (e.g. a batch halved after an out-of-memory error) as one stderr line."""

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        print(f"unetseg {command}: warning: {message}", file=sys.stderr)

    return show


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``unetseg``; returns the exit code."""
    args = build_parser().parse_args(argv)
    warnings.showwarning = _one_line_warning(args.command)
    try:
        return int(args.func(args) or 0)
    except UserInputError as exc:
        if os.environ.get("RANK", "0") == "0":  # under torchrun every rank refuses alike: say it once
            print(f"unetseg {args.command}: error: {exc.worded(args.flag_names)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"unetseg {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - a bug: say so
        if args.debug:
            traceback.print_exc()
        hint = "" if args.debug else "; --debug shows the traceback"
        print(f"unetseg {args.command}: internal error: {exc!r} (please report it{hint})", file=sys.stderr)
        return 1

"""``unetseg``: the command line over the core engine.

Each sub-command parses its flags into core config objects and calls one core
function. Exit codes: 0 ok, 2 bad input (one line on stderr), 1 internal error,
130 interrupted.
"""

from __future__ import annotations

import argparse
import sys
import traceback
import warnings
from collections.abc import Sequence

from napari_unetseg import __version__
from napari_unetseg.core.errors import UserInputError


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
        "--model",
        help="architecture: unet (default), unetplusplus, unet3plus, fcn8s, fcn16s, fcn32s, "
        "deeplabv3plus, unet3d, unetplusplus3d (see `unetseg models`)",
    )
    p.add_argument("--depth", type=int, help="down-sampling steps (default 4)")
    p.add_argument("--base-channels", type=int, help="width of the first level (default 32)")
    p.add_argument("--norm", help="batch, instance, group or none")
    p.add_argument("--upsample", help="bilinear or transpose (U-Net)")
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
    mode = p.add_mutually_exclusive_group()
    mode.add_argument(
        "--sparse",
        dest="label_mode",
        action="store_const",
        const="sparse",
        help="label 0 = unpainted, ignored (default)",
    )
    mode.add_argument(
        "--dense",
        dest="label_mode",
        action="store_const",
        const="dense",
        help="label 0 = background, a class like the others",
    )
    p.add_argument("--steps", type=int, help="total optimisation steps (default 500)")
    p.add_argument("--patch-size", type=int, help="training patch side in pixels (default 128)")
    p.add_argument("--patch-depth", type=int, help="3D models: training patch depth in slices (default 16)")
    p.add_argument("--batch-size", type=int, help="patches per step (default 8)")
    p.add_argument("--lr", dest="learning_rate", type=float, help="learning rate (default 1e-3)")
    p.add_argument("--steps-per-epoch", type=int, help="steps between model files (default 50)")
    p.add_argument("--validation-fraction", type=float, help="held-out labelled slices (default 0.2)")
    p.add_argument("--device", help="auto, cpu, cuda or mps (default auto)")
    p.add_argument("--precision", help="auto, fp32, bf16 or fp16 (default auto)")
    p.add_argument("--seed", type=int, help="random seed (default 0)")
    p.add_argument(
        "--tries",
        type=int,
        help="start this many runs (seeds SEED, SEED+1, ...) and keep the one whose training loss "
        "is lowest after --try-steps (default 1)",
    )
    p.add_argument("--try-steps", type=int, help="steps of each try (default: a quarter of --steps)")
    p.add_argument("--init", metavar="MODEL_FILE", help="fine-tune from this model file")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a stopped run")
    p.add_argument("--config", metavar="FILE", help="JSON/TOML file with [model] and [train] sections")
    p.add_argument("--overwrite", action="store_true", help="allow a run folder that holds a model")
    p.set_defaults(func=_run_train)


def _add_predict(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict",
        help="segment images with a model file",
        description="Tiled prediction: writes OUT_DIR/<input name>.tif label images.",
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files")
    p.add_argument(
        "--model",
        required=True,
        action="append",
        metavar="MODEL_FILE",
        help="model.pt (or its run folder); repeat --model for an ensemble that averages "
        "the models' probabilities",
    )
    p.add_argument("--out", required=True, metavar="OUT_DIR", help="output folder")
    p.add_argument("--axes", help="axes of the inputs (default: from metadata)")
    p.add_argument("--tile-size", type=int, default=1024, help="largest tile side in pixels (default 1024)")
    p.add_argument(
        "--overlap",
        type=float,
        help="overlap of neighbouring tiles: pixels, or a fraction of the tile if below 1 "
        "(default 64, a quarter of tiles under 256)",
    )
    p.add_argument("--batch-size", type=int, default=4, help="tiles per forward pass (default 4)")
    p.add_argument("--tile-depth", type=int, default=32, help="3D models: tile depth in slices (default 32)")
    p.add_argument("--blending", default="gaussian", help="gaussian or constant (default gaussian)")
    p.add_argument("--tta", action="store_true", help="average over flips (4x slower)")
    p.add_argument("--probabilities", action="store_true", help="also write <name>_probabilities.tif")
    p.add_argument("--head", type=int, help="UNet++: predict from head L1..L4 (pruned)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    p.add_argument("--precision", default="auto", help="auto, fp32, bf16 or fp16")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.set_defaults(func=_run_predict)


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="score a prediction against ground truth",
        description="Dice, IoU, precision, recall, F1, Hausdorff and HD95 per class.",
    )
    p.add_argument("--prediction", required=True, metavar="P", help="predicted label image")
    p.add_argument("--truth", required=True, metavar="T", help="ground-truth label image")
    p.add_argument("--classes", type=int, nargs="+", help="label values to score (default: all)")
    p.add_argument("--ignore", type=int, nargs="+", default=[], help="label values to leave out")
    p.add_argument("--json", metavar="FILE", help="write all metrics as JSON")
    p.add_argument("--csv", metavar="FILE", help="write per-class and per-slice metrics as CSV")
    p.add_argument("--no-surface", dest="surface", action="store_false", help="skip Hausdorff/HD95")
    p.add_argument("--overwrite", action="store_true", help="replace existing JSON/CSV files")
    p.set_defaults(func=_run_evaluate)


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="train on the built-in sample, predict, print Dice/IoU",
        description="Generate the synthetic sample stack, train on its painted "
        "strokes, predict the whole stack and score it against the ground truth.",
    )
    p.add_argument("--out", default="unetseg-demo", help="demo folder (default ./unetseg-demo)")
    p.add_argument("--steps", type=int, default=150, help="training steps (default 150)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    p.set_defaults(func=_run_demo)


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
    p.set_defaults(func=_run_prune)


def _add_models(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list the available architectures")
    p.set_defaults(func=_run_models)


def build_parser() -> argparse.ArgumentParser:
    """The ``unetseg`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="unetseg",
        description="Train U-Net/UNet++ on painted labels, segment stacks, score them.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for every error")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_add_train, _add_predict, _add_evaluate, _add_prune, _add_demo, _add_models):
        add(sub)
    return parser


def _progress(total: int | None = None, unit: str = "step"):
    from tqdm import tqdm

    return tqdm(total=total, unit=unit, file=sys.stderr, dynamic_ncols=True, leave=False, disable=None)


def _train_printer():
    """An ``on_event`` callback: a progress bar over steps, a line per epoch."""
    from napari_unetseg.core.events import ChoiceEvent, EpochEvent, StepEvent, TryEvent

    bar = None

    def on_event(event) -> None:
        nonlocal bar
        if isinstance(event, (TryEvent, ChoiceEvent)) and bar is not None:
            bar.close()
            bar = None
        if isinstance(event, TryEvent):
            print(f"try {event.index}/{event.tries}: seed {event.seed}, {event.steps} steps", file=sys.stderr)
        elif isinstance(event, ChoiceEvent):
            losses = ", ".join(f"seed {seed}: {loss:.4f}" for seed, loss in event.losses.items())
            print(
                f"kept seed {event.seed} (mean loss over steps {event.first}-{event.last}: {losses})",
                file=sys.stderr,
            )
        elif isinstance(event, StepEvent):
            if bar is None:
                bar = _progress(event.total_steps)
                bar.update(event.step - 1)
            bar.update(1)
            bar.set_postfix(loss=f"{event.loss:.4f}")
        elif isinstance(event, EpochEvent):
            val = event.validation or {}
            extra = f"  val Dice {val['val_dice_mean']:.4f}" if "val_dice_mean" in val else ""
            message = f"epoch {event.epoch}  step {event.step}  loss {event.train_loss:.4f}{extra}"
            (bar.write if bar else print)(message, file=sys.stderr)
            if bar is not None and bar.n >= bar.total:
                bar.close()
                bar = None

    return on_event


def _predict_printer():
    """An ``on_event`` callback: one progress bar of slices per input file."""
    from napari_unetseg.core.events import PredictProgress

    state = {"bar": None, "name": ""}

    def on_event(event) -> None:
        if isinstance(event, tuple) and event[0] == "file":
            if state["bar"] is not None:
                state["bar"].close()
            state["bar"], state["name"] = None, event[2].name
        elif isinstance(event, PredictProgress):
            if state["bar"] is None:
                state["bar"] = _progress(event.n_slices, unit="slice")
                state["bar"].set_description(state["name"])
            state["bar"].set_postfix(tiles=f"{event.done}/{event.total}")
            if event.done == event.total:
                state["bar"].update(1)

    return on_event


def _run_train(args: argparse.Namespace) -> int:
    from napari_unetseg.core.workflows import train_from_files

    model_options = {
        "name": args.model,
        "depth": args.depth,
        "base_channels": args.base_channels,
        "norm": args.norm,
        "upsample": args.upsample,
        "deep_supervision": args.deep_supervision,
        "anisotropy": args.anisotropy,
    }
    train_options = {
        key: getattr(args, key)
        for key in (
            "label_mode",
            "steps",
            "patch_size",
            "patch_depth",
            "batch_size",
            "learning_rate",
            "steps_per_epoch",
            "validation_fraction",
            "device",
            "precision",
            "seed",
            "tries",
            "try_steps",
        )
    }
    result = train_from_files(
        args.images,
        args.labels,
        args.out,
        model_options,
        train_options,
        axes=args.axes,
        label_axes=args.label_axes,
        config_file=args.config,
        init=args.init,
        resume=args.resume,
        overwrite=args.overwrite,
        on_event=_train_printer(),
    )
    state = "stopped" if result.stopped else "finished"
    print(f"training {state} at step {result.loaded.step}: {result.run_dir / 'model.pt'}")
    return 0


def _run_predict(args: argparse.Namespace) -> int:
    from napari_unetseg.core.config import PredictConfig
    from napari_unetseg.core.workflows import predict_files

    config = PredictConfig(
        tile_size=args.tile_size,
        overlap=args.overlap,
        batch_size=args.batch_size,
        tile_depth=args.tile_depth,
        blending=args.blending,
        tta=args.tta,
        device=args.device,
        precision=args.precision,
    )
    written = predict_files(
        args.model,
        args.inputs,
        args.out,
        config,
        axes=args.axes,
        head=args.head,
        probabilities=args.probabilities,
        overwrite=args.overwrite,
        on_event=_predict_printer(),
    )
    for path in written:
        print(path)
    return 0


def _run_evaluate(args: argparse.Namespace) -> int:
    from napari_unetseg.core.metrics import format_table
    from napari_unetseg.core.workflows import evaluate_files, write_evaluation

    result = evaluate_files(args.prediction, args.truth, args.classes, args.ignore, args.surface)
    write_evaluation(result, args.json, args.csv, overwrite=args.overwrite)
    print(format_table(result))
    return 0


def _run_demo(args: argparse.Namespace) -> int:
    from napari_unetseg.core.demo import run_demo
    from napari_unetseg.core.metrics import format_table

    print(
        f"unetseg demo: sample stack, {args.steps} training steps on painted strokes, "
        f"prediction and scores in {args.out}/",
        file=sys.stderr,
    )
    result = run_demo(args.out, steps=args.steps, device=args.device, on_event=_demo_printer())
    print(format_table(result))
    fg = result.per_class.get(2)
    if fg is not None:
        print(f"nucleus class (2): Dice {fg['dice']:.3f}  IoU {fg['iou']:.3f}")
    return 0


def _demo_printer():
    train, predict = _train_printer(), _predict_printer()

    def on_event(event) -> None:
        from napari_unetseg.core.events import PredictProgress

        (predict if isinstance(event, (tuple, PredictProgress)) else train)(event)

    return on_event


def _run_prune(args: argparse.Namespace) -> int:
    from napari_unetseg.core.workflows import prune_file

    print(prune_file(args.model, args.head, args.out, overwrite=args.overwrite))
    return 0


def _run_models(args: argparse.Namespace) -> int:
    from napari_unetseg.core.config import ModelSpec
    from napari_unetseg.core.models import available_models, parameter_count

    for name, description in available_models().items():
        size = parameter_count(ModelSpec(name=name)) / 1e6
        print(f"{name:<14} {size:6.1f} M  {description}")
    print("(parameters at the defaults: base width 32, depth 4, 1 channel, 2 classes)")
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
        print(f"unetseg {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"unetseg {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - a bug: say so, with the traceback
        if args.debug:
            traceback.print_exc()
        else:
            print(traceback.format_exc(), file=sys.stderr)
        print(f"unetseg {args.command}: internal error: {exc!r} (please report it)", file=sys.stderr)
        return 1

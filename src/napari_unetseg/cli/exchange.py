"""``unetseg export`` (a model file as a bioimage.io model package) and ``unetseg starters``
(the starter models shipped in the package)."""

from __future__ import annotations

import argparse

from napari_unetseg.cli._parsing import finish


def add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="write a model file as a bioimage.io model package (.zip)",
        description="Write a bioimage.io model package (model spec 0.5: pytorch_state_dict weights with "
        "the network's source, torchscript weights, the normalisation as preprocessing, softmax, a test "
        "input and output, a cover and a model card) that bioimageio.core, ilastik, deepImageJ and QuPath "
        "read, and that unetseg predict --model and train --init take back.",
    )
    p.add_argument("model", metavar="MODEL", help="model.pt (or its run folder)")
    p.add_argument("out", metavar="OUT.zip", help="the package to write")
    p.add_argument("--sample", metavar="IMAGE", help="an image for the test input and the cover "
                   "(its first slice, or its volume for 3D models; default: a synthetic one)")  # fmt: skip
    p.add_argument("--axes", help="axes of the sample image (default: from metadata)")
    p.add_argument("--author", action="append", metavar="NAME", help="an author of the model (repeatable)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing package")
    finish(p, _run_export, {"model": "MODEL", "out": "OUT.zip"})


def _run_export(args: argparse.Namespace) -> int:
    from napari_unetseg.core.file_prediction import export_file

    print(export_file(args.model, args.out, args.sample, args.axes, tuple(args.author or ()), args.overwrite))
    return 0


def add_starters(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "starters",
        help="list the starter models shipped in the package",
        description="Starter models to fine-tune from: unetseg train --init starter:NAME (their model "
        "cards, with data, licence, citation and scores, are the .md files beside them).",
    )
    finish(p, _run_starters)


def _run_starters(args: argparse.Namespace) -> int:
    from napari_unetseg.core.checkpoint import load_model
    from napari_unetseg.core.starters import PREFIX, available

    for starter in available().values():
        loaded = load_model(starter.path)
        classes = ", ".join(f"{v} {n}" for v, n in zip(loaded.class_values, loaded.class_names))
        size = starter.path.stat().st_size / 2**20
        print(f"{PREFIX}{starter.name:<16} {starter.description}")
        print(f"{'':<24} {loaded.spec.name}, classes {classes}; {size:.1f} MB; card {starter.card}")
    return 0

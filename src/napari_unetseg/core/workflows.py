"""File-level workflows: read files, call the engine's job entries, write files.

Each function here is what one ``unetseg`` sub-command does, minus argument parsing
and printing, so the CLI stays a thin shell and scripts can call the same thing. They
reach the engine through :mod:`~napari_unetseg.core.jobs`, as the docks do. Training,
evaluation and measurement are here; prediction, export and pruning of model files in
:mod:`~napari_unetseg.core.file_prediction`.
"""

from __future__ import annotations

import csv
import io
import json
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from napari_unetseg.core.class_names import name_classes
from napari_unetseg.core.config import (
    ModelSpec,
    RunOptions,
    TrainConfig,
    upgrade_sections,
)
from napari_unetseg.core.errors import UserInputError
from napari_unetseg.core.events import run_generator
from napari_unetseg.core.io import (
    labels_to_stack,
    read_class_names,
    read_image,
    read_labels,
    to_stack,
    write_bytes_atomic,
)
from napari_unetseg.core.jobs import check_run, start_training
from napari_unetseg.core.metrics import EvaluationResult, evaluate, scored_classes
from napari_unetseg.core.objects import ObjectEvaluation, evaluate_objects
from napari_unetseg.core.run_folder import RunFolder

EventCallback = Callable[[Any], None] | None


def merge_sections(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """``base`` updated with ``top``; nested sections (``advanced``, ``normalization``)
    are merged key by key, and ``None`` in ``top`` means "not given"."""
    merged = dict(base)
    for key, value in top.items():
        if value is None:
            continue
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            value = merge_sections(merged[key], value)
        merged[key] = value
    return merged


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a JSON or TOML config file into a dict (sections ``model``, ``train``, ``predict``)."""
    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"config file {path} does not exist or is not a file")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix.lower() == ".toml":
            import tomllib

            data = tomllib.loads(text)
        else:
            data = json.loads(text)
    except ValueError as exc:
        raise UserInputError(f"config file {path} is not valid {path.suffix or 'JSON'}: {exc}") from exc
    if not isinstance(data, dict):
        raise UserInputError(f"config file {path} must hold a mapping of sections")
    return data


def build_train_configs(
    model_options: dict[str, Any],
    train_options: dict[str, Any],
    config_file: str | Path | None = None,
    resume_dir: str | Path | None = None,
) -> tuple[ModelSpec, TrainConfig]:
    """Merge defaults < earlier run (resume) < config file < explicit options (``None`` =
    not given). Sections of earlier versions are read too (:func:`upgrade_sections`)."""
    from napari_unetseg.core.models import MODELS

    model: dict[str, Any] = {}
    train: dict[str, Any] = {}
    sources = []
    if resume_dir is not None:
        record = RunFolder(resume_dir).read_record()
        sources.append((record.get("model", {}), record.get("train", {})))
    if config_file is not None:
        data = load_config_file(config_file)
        unknown = set(data) - {"model", "train", "predict"}
        if unknown:
            raise UserInputError(f"config file sections must be model/train/predict, got {sorted(unknown)}")
        sources.append((data.get("model", {}), data.get("train", {})))
    sources.append((model_options, train_options))
    for model_part, train_part in sources:
        model_part, train_part = upgrade_sections(model_part, train_part)
        model, train = merge_sections(model, model_part), merge_sections(train, train_part)
    name = model.get("name", ModelSpec.name)
    if name not in MODELS:
        raise UserInputError(f"unknown model {name!r}", (f"choose one of {', '.join(MODELS)}", "model"))
    return ModelSpec.from_dict(model), TrainConfig.from_dict(train)


def read_training_pairs(
    images: Sequence[str | Path],
    labels: Sequence[str | Path],
    axes: str | None = None,
    label_axes: str | None = None,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Read (image, labels) files into ``(N, C, Y, X)`` and ``(N, Y, X)`` stacks."""
    if len(images) != len(labels):
        raise UserInputError(
            f"got {len(images)} image file(s) but {len(labels)} label file(s): give one label file per image"
        )
    image_stacks, label_stacks = [], []
    for image_path, label_path in zip(images, labels):
        image, found = read_image(image_path, axes)
        stack, _ = to_stack(image, found)
        label, label_found = read_labels(label_path, label_axes)
        image_stacks.append(stack)
        label_stacks.append(labels_to_stack(label, label_found))
    return image_stacks, label_stacks


def train_from_files(
    images: Sequence[str | Path],
    labels: Sequence[str | Path],
    out: str | Path | None,
    model_options: dict[str, Any] | None = None,
    train_options: dict[str, Any] | None = None,
    axes: str | None = None,
    label_axes: str | None = None,
    config_file: str | Path | None = None,
    init: str | Path | None = None,
    resume: str | Path | None = None,
    overwrite: bool = False,
    on_event: EventCallback = None,
    class_names: Sequence[str] | None = None,
):
    """``unetseg train``: read the pairs, train, write the run folder; returns the TrainResult.
    ``class_names``: one per class, in the order of the label values."""
    from napari_unetseg.core.parallel import init_from_environment

    if resume is None and out is None:
        raise UserInputError("no run folder given", ("give one", "out"), ("give the run to resume", "resume"))
    init_from_environment()  # several ranks under torchrun: they train one model together
    run = RunOptions(resume if resume is not None else out, init, resume is not None, overwrite)
    check_run(run)  # before any file is read (start_training checks it again: the docks' way in)
    if out is not None and resume is not None and Path(out) != Path(resume):
        raise UserInputError(
            "a resumed run stays in its own run folder",
            ("leave the run folder out or make it the same", "out"),
        )
    spec, config = build_train_configs(model_options or {}, train_options or {}, config_file, resume)
    image_stacks, label_stacks = read_training_pairs(images, labels, axes, label_axes)
    trainer = start_training(image_stacks, label_stacks, spec, config, run, class_names)
    for message in trainer.warnings:
        warnings.warn(message, UserWarning, stacklevel=2)
    return run_generator(trainer.run(), on_event)


def evaluate_files(
    prediction: str | Path,
    truth: str | Path,
    classes: Sequence[int] | None = None,
    ignore: Sequence[int] = (),
    surface: bool = True,
    class_names: Sequence[str] | None = None,
) -> EvaluationResult:
    """``unetseg evaluate``: read both label images and score them. The classes are named
    by ``class_names`` (in the order of the scored values), else by the prediction file."""
    pred, _ = read_labels(prediction)
    true, _ = read_labels(truth)
    names = read_class_names(prediction)
    if class_names is not None:
        scored = scored_classes(pred, true, classes, ignore)
        names = dict(zip(scored, name_classes(scored, class_names)))
    return evaluate(pred, true, classes=classes, ignore=ignore, surface=surface, names=names)


def _write_report(
    json_path: str | Path | None,
    csv_path: str | Path | None,
    overwrite: bool,
    as_dict: Callable[[], dict],
    csv_rows: Callable[[], list[list]],
) -> None:
    """Write a score report as JSON (``as_dict()``) and/or CSV (``csv_rows()``, header
    first), atomically, refusing to replace a file unless asked."""
    for path in (json_path, csv_path):
        if path is not None and Path(path).exists() and not overwrite:
            raise UserInputError(f"{path} already exists", "choose another name", ("replace it", "overwrite"))
    if json_path is not None:
        write_bytes_atomic(json_path, json.dumps(as_dict(), indent=2).encode())
    if csv_path is not None:
        buffer = io.StringIO()
        csv.writer(buffer).writerows(csv_rows())
        write_bytes_atomic(csv_path, buffer.getvalue().encode())


def write_evaluation(
    result: EvaluationResult,
    json_path: str | Path | None = None,
    csv_path: str | Path | None = None,
    overwrite: bool = False,
) -> None:
    """Write the evaluation as JSON and/or CSV (refusing to replace files unless asked)."""

    def rows() -> list[list]:
        names = list(result.mean)
        table = [["scope", "class", "name", *names]]
        for value in result.classes:
            table.append(["all", value, result.name_of(value), *[result.per_class[value][n] for n in names]])
        table.append(["all", "mean", "all classes", *[result.mean[n] for n in names]])
        for index, row in enumerate(result.per_slice):
            for value in result.classes:
                scores = [row[value][n] for n in names]
                table.append([f"slice {index}", value, result.name_of(value), *scores])
        return table

    _write_report(json_path, csv_path, overwrite, result.to_dict, rows)


def evaluate_object_files(prediction: str | Path, truth: str | Path) -> ObjectEvaluation:
    """``unetseg evaluate --objects``: read two instance images and score their objects,
    as one 3D volume when the ground truth has a Z axis, else plane by plane."""
    pred, _ = read_labels(prediction)
    true, axes = read_labels(truth)
    return evaluate_objects(pred, true, volume="Z" in axes and true.ndim == 3)


def write_object_evaluation(
    result: ObjectEvaluation, json_path: str | Path | None, csv_path: str | Path | None, overwrite: bool
) -> None:
    """Write object scores as JSON and/or CSV (one row for all images, then one per image)."""

    def rows() -> list[list]:
        named = [("all", result.total())] + [(str(i), s.to_dict()) for i, s in enumerate(result.images)]
        keys = list(named[0][1])
        return [["image", *keys], *[[name, *[row.get(k, "") for k in keys]] for name, row in named]]

    _write_report(json_path, csv_path, overwrite, result.to_dict, rows)


def measure_file(
    objects_path: str | Path,
    csv_path: str | Path,
    image_path: str | Path | None = None,
    axes: str | None = None,
    overwrite: bool = False,
) -> dict[str, np.ndarray]:
    """``unetseg measure``: one CSV row per object of an object image (with the intensities
    of ``image_path``), plane by plane, or as 3D objects when the file has a Z axis."""
    from napari_unetseg.core.measure import measure_objects, table_rows

    objects, found = read_labels(objects_path)
    volume = "Z" in found and objects.ndim == 3
    image = None if image_path is None else to_stack(*read_image(image_path, axes))[0]
    columns = measure_objects(objects if volume else labels_to_stack(objects, found), image, volume)
    _write_report(None, csv_path, overwrite, dict, lambda: table_rows(columns))
    return columns

"""File-level workflows: read files, call the engine's job entries, write files.

Each function here is what one ``unetseg`` sub-command does, minus argument parsing
and printing, so the CLI stays a thin shell and scripts can call the same thing. They
reach the engine through :mod:`~napari_unetseg.core.jobs`, as the docks do.
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
    PredictConfig,
    RunOptions,
    TrainConfig,
    upgrade_sections,
)
from napari_unetseg.core.errors import UserInputError
from napari_unetseg.core.events import FileEvent, run_generator
from napari_unetseg.core.instances import is_object_model, object_sink
from napari_unetseg.core.io import (
    labels_to_stack,
    read_class_names,
    read_image,
    read_labels,
    to_stack,
    write_bytes_atomic,
)
from napari_unetseg.core.jobs import check_run, load_models, start_training
from napari_unetseg.core.metrics import EvaluationResult, evaluate, scored_classes
from napari_unetseg.core.objects import ObjectEvaluation, evaluate_objects
from napari_unetseg.core.outputs import open_input, open_writers, plan_outputs
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


def predict_files(
    model_path: str | Path | Sequence[str | Path],
    inputs: Sequence[str | Path],
    out_dir: str | Path | None,
    config: PredictConfig | None = None,
    axes: str | None = None,
    head: int | None = None,
    probabilities: bool = False,
    overwrite: bool = False,
    on_event: EventCallback = None,
    semantic: bool = False,
    label_name: str | None = None,
    dask: str | None = None,
) -> list[Path]:
    """``unetseg predict``: one label image per input, written atomically; returns the paths.

    TIFF inputs give TIFFs in ``out_dir``, zarr and OME-Zarr inputs OME-Zarr stores there
    (:mod:`~napari_unetseg.core.outputs`); ``label_name`` puts an OME-Zarr input's labels
    into its own ``labels/`` group (``out_dir`` then only for probabilities).

    A model trained on objects writes object ids (``uint32``, one per object of the stack) unless
    ``semantic`` asks for its classes.

    Several model files predict as an ensemble (their probabilities are averaged,
    :func:`~napari_unetseg.core.prediction.iter_predict`); ``head`` prunes each of them.
    ``on_event`` receives a :class:`FileEvent` before each input and the
    :class:`PredictProgress` events while it is predicted.

    ``dask`` (``local:N`` or a scheduler address) predicts block by block on a dask
    cluster instead (:mod:`~napari_unetseg.core.distributed`; ``config.block_size``): the
    same labels, outputs written by the workers, a stopped run resumed by the same call.
    """
    from napari_unetseg.core.device import resolve_device
    from napari_unetseg.core.prediction import iter_predict, labels_dtype

    config = config or PredictConfig()
    # a race with a second run writing the same names is caught again at commit
    targets = plan_outputs(inputs, out_dir, probabilities, label_name)
    if not overwrite:
        for target in targets:
            for path in target.existing():
                inside = target.labels_of is not None and path == target.labels
                other = ("choose another name", "label_name")
                if not inside:
                    other = ("choose another output folder", "out")
                raise UserInputError(
                    f"{path} already exists",
                    other,
                    ("replace it", "overwrite"),
                )
    paths = [model_path] if isinstance(model_path, (str, Path)) else list(model_path)
    models = load_models(paths, head, resolve_device(config.device))
    class_values = models[0].class_values
    names = {value: models[0].name_of(value) for value in class_values} if models[0].class_names else {}
    if semantic and not is_object_model(models[0]):
        raise UserInputError("is for models trained on objects: this model's labels are classes already",
                             subject="semantic")  # fmt: skip
    objects = is_object_model(models[0]) and not semantic
    if dask is not None:
        return _predict_with_dask(dask, models, paths, targets, axes, config, probabilities, objects,
                                  overwrite, on_event)  # fmt: skip
    written = []
    for index, target in enumerate(targets):
        image, found, zarr_image = open_input(target.source, axes)
        stack, layout = to_stack(image, found)
        if on_event:
            on_event(FileEvent(index, len(inputs), target.source))
        # the writers create their folder and files on the first finished slice
        dtype = np.dtype(np.uint32) if objects else labels_dtype(class_values)
        class_names = {} if objects else names
        outputs = open_writers(target, layout, dtype, len(class_values), class_names, zarr_image)
        sinks = dict(outputs)
        if objects:
            sinks["labels_out"] = object_sink(models[0], outputs["labels_out"], len(stack))
        try:
            run_generator(iter_predict(models, stack, config, probabilities, **sinks), on_event)
        except BaseException:
            for writer in outputs.values():
                writer.discard()
            raise
        written += [writer.commit(overwrite) for writer in outputs.values()]
    return written


def _predict_with_dask(
    address, models, paths, targets, axes, config, probabilities, objects, overwrite, on_event
):
    """:func:`predict_files` block by block on a dask cluster (checks first, then connects)."""
    from napari_unetseg.core.blocks import check_block_depth
    from napari_unetseg.core.checkpoint import model_file
    from napari_unetseg.core.distributed import connect, local_threads, predict_with_dask
    from napari_unetseg.core.prediction import is_volume_model

    if is_volume_model(models[0]):
        check_block_depth(config.block_depth, config.tile_depth)
    files = [model_file(p) for p in paths]
    with connect(address) as client:
        return predict_with_dask(
            client,
            models,
            files,
            targets,
            axes,
            config,
            probabilities,
            overwrite,
            on_event,
            local_threads(address),
            objects,
        )


def export_file(
    model_path: str | Path,
    out: str | Path,
    sample: str | Path | None = None,
    axes: str | None = None,
    authors: Sequence[str] = (),
    overwrite: bool = False,
) -> Path:
    """``unetseg export``: the model file as a bioimage.io package; ``sample`` (an image
    file) gives the test input: its first slice, or its volume for 3D models."""
    from napari_unetseg.core.bioimageio import export_package
    from napari_unetseg.core.checkpoint import load_model
    from napari_unetseg.core.prediction import is_volume_model

    image = None
    if sample is not None:
        stack, _ = to_stack(*read_image(sample, axes))
        volume = is_volume_model(load_model(model_path))
        image = np.moveaxis(np.asarray(stack), 1, 0) if volume else np.asarray(stack[0])
    return export_package(model_path, out, image, overwrite, tuple(authors))


def prune_file(model_path: str | Path, head: int, out: str | Path, overwrite: bool = False) -> Path:
    """``unetseg prune``: save a UNet++ model file cut down to head ``L{head}``."""
    from napari_unetseg.core.checkpoint import load_model, pruned, save_model

    out = Path(out)
    if out.is_dir():
        raise UserInputError(
            f"{out} is a folder", (f"give a file name such as {out / f'model_L{head}.pt'}", "out")
        )
    if out.exists() and not overwrite:
        raise UserInputError(
            f"{out} already exists", ("choose another file", "out"), ("replace it", "overwrite")
        )
    return save_model(pruned(load_model(model_path), head), out)


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

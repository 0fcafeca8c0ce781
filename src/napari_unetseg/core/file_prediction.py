"""File-level prediction workflows: ``unetseg predict`` (one process, or block by block on
dask), ``unetseg export`` and ``unetseg prune``; the rest of the sub-commands' file layer is
:mod:`~napari_unetseg.core.workflows`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from napari_unetseg.core.config import PredictConfig
from napari_unetseg.core.errors import UserInputError
from napari_unetseg.core.events import FileEvent, run_generator
from napari_unetseg.core.io import read_image, to_stack
from napari_unetseg.core.jobs import load_models
from napari_unetseg.core.object_sink import check_z_stack, is_object_model, object_sink
from napari_unetseg.core.outputs import open_input, open_writers, plan_outputs

EventCallback = Callable[[Any], None] | None


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
    objects_3d: bool = False,
) -> list[Path]:
    """``unetseg predict``: one label image per input, written atomically; returns the paths.

    TIFF inputs give TIFFs in ``out_dir``, zarr and OME-Zarr inputs OME-Zarr stores there
    (:mod:`~napari_unetseg.core.outputs`); ``label_name`` puts an OME-Zarr input's labels
    into its own ``labels/`` group (``out_dir`` then only for probabilities).

    A model trained on objects writes object ids (``uint32``, one per object of the stack) unless
    ``semantic`` asks for its classes. ``objects_3d``: a 2D object model on z-stacks (files
    whose only axis besides the channels, Y and X is Z) finds 3D objects, its slices'
    classes joined into one volume (a 3D model always does).

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
    if objects_3d:
        check_objects_3d(models[0], semantic)
    if dask is not None:
        return _predict_with_dask(dask, models, paths, targets, axes, config, probabilities, objects,
                                  overwrite, on_event, objects_3d)  # fmt: skip
    written = []
    for index, target in enumerate(targets):
        image, found, zarr_image = open_input(target.source, axes)
        stack, layout = to_stack(image, found)
        if objects_3d:
            check_z_stack(layout.axes, target.source.name)
        if on_event:
            on_event(FileEvent(index, len(inputs), target.source))
        # the writers create their folder and files on the first finished slice
        dtype = np.dtype(np.uint32) if objects else labels_dtype(class_values)
        class_names = {} if objects else names
        outputs = open_writers(target, layout, dtype, len(class_values), class_names, zarr_image)
        sinks = dict(outputs)
        if objects:
            sinks["labels_out"] = object_sink(models[0], outputs["labels_out"], len(stack), objects_3d)
        try:
            run_generator(iter_predict(models, stack, config, probabilities, **sinks), on_event)
        except BaseException:
            for writer in outputs.values():
                writer.discard()
            raise
        written += [writer.commit(overwrite) for writer in outputs.values()]
    return written


def check_objects_3d(loaded, semantic: bool) -> None:
    """Refuse 3D objects where they cannot be had: from a semantic model, or with the
    classes asked for."""
    if not is_object_model(loaded):
        raise UserInputError("is for models trained on objects: this model gives classes",
                             subject="objects_3d")  # fmt: skip
    if semantic:
        raise UserInputError("asks for objects, and classes are asked for too", ("leave one out", "semantic"),
                             subject="objects_3d")  # fmt: skip


def _predict_with_dask(
    address, models, paths, targets, axes, config, probabilities, objects, overwrite, on_event, objects_3d
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
            objects_3d,
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

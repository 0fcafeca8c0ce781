"""The one way into the engine for each job: what ``unetseg`` and the docks both call.

* training: :func:`start_training` gives a trainer whose ``run()`` yields events
  (``unetseg train`` runs it to the end; the Train dock runs it in a worker);
* prediction: :func:`load_models`, then
  :func:`~napari_unetseg.core.prediction.iter_predict` (or ``predict_stack``);
* evaluation: :func:`~napari_unetseg.core.metrics.evaluate` and
  :func:`~napari_unetseg.core.metrics.error_map`.

The fronts differ only in where the arrays come from (files or layers) and where the
results go; their options are the same config objects (:mod:`~napari_unetseg.core.config`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from napari_unetseg.core.auto_start import is_auto
from napari_unetseg.core.checkpoint import LoadedModel, load_model, pruned
from napari_unetseg.core.config import ModelSpec, RunOptions, TrainConfig
from napari_unetseg.core.errors import UserInputError
from napari_unetseg.core.io import check_output_folder
from napari_unetseg.core.prediction import check_ensemble
from napari_unetseg.core.training import BestOfTries, Trainer, make_trainer


def start_training(
    images: Sequence[np.ndarray],
    labels: Sequence[np.ndarray],
    spec: ModelSpec,
    config: TrainConfig,
    run: RunOptions,
    class_names: Sequence[str] | Mapping[int, str] | None = None,
) -> Trainer | BestOfTries:
    """Check the run options and build the trainer (nothing is written yet).

    Parameters
    ----------
    images, labels
        ``(N, C, Y, X)`` image stacks and their ``(N, Y, X)`` label stacks.
    spec, config, run
        The model recipe, the training options and the run folder's options.
    class_names
        What the classes are called (one per class in label-value order, or value -> name).
    """
    check_run(run)
    return make_trainer(images, labels, spec, config, run, class_names)


def check_run(run: RunOptions) -> None:
    """Refuse run options that contradict each other, or a run folder that cannot be written."""
    if run.resume and run.init is not None and not is_auto(run.init):  # auto: a resumed run goes on
        raise UserInputError(
            "a run can continue or fine-tune from a model file, not both",
            ("continue it", "resume"),
            ("fine-tune", "init"),
        )
    if run.run_dir is not None:
        check_output_folder(run.run_dir, "resume" if run.resume else "out")


def load_models(
    paths: Sequence[str | Path], head: int | None = None, device: torch.device | str = "cpu"
) -> list[LoadedModel]:
    """The model files to predict with: one, or the members of an ensemble (checked to
    share classes, channels and 2D/3D). ``head`` prunes each UNet++ to that head."""
    if not paths:
        raise UserInputError("no model file chosen", ("choose one, or several for an ensemble", "model"))
    models = [load_model(path, device) for path in paths]
    if head is not None:
        models = [pruned(loaded, head) for loaded in models]
    check_ensemble(models)
    return models

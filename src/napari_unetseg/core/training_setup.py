"""How a training run is set up, before its loop: the model file it starts from, its
network, its training data, and its learning-rate schedule. Used by
:class:`~napari_unetseg.core.training.Trainer`; no state of its own.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
import torch

from napari_unetseg.core import data as data_mod
from napari_unetseg.core.checkpoint import LoadedModel, load_matching_weights, load_model
from napari_unetseg.core.config import ModelSpec, RunOptions, TrainConfig
from napari_unetseg.core.contacts import contact_levels
from napari_unetseg.core.errors import UserInputError
from napari_unetseg.core.inference import channels_last_format
from napari_unetseg.core.models import build_model
from napari_unetseg.core.normalization import Normalization
from napari_unetseg.core.priors import PriorEstimator
from napari_unetseg.core.run_folder import RunFolder


def lr_factor(step: int, total: int) -> float:
    """Linear warm-up over 5 % of the steps, then cosine decay to 1 %."""
    warmup = max(1, min(100, total // 20))
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


FINE_TUNE_RATE = 0.1  # share of the learning rate when fine-tuning a model trained on full masks


def fine_tuning_config(config: TrainConfig, base: LoadedModel | None, resume: bool) -> TrainConfig:
    """The run's config when it starts from a model trained on full masks (every starter):
    a tenth of the learning rate (the model already knows; at the full rate strokes pull it
    away: EM membranes fell from 0.79 zero-shot to 0.73-0.69 in 500 steps, while at a tenth
    they stay at 0.79-0.80) and no prior correction (the model knows the classes'
    frequencies; correcting the strokes' on top of it cost nuclei 0.01-0.05 Dice).
    docs/benchmarks.md, "Starters". Any other run keeps its config."""
    if base is None or resume or base.label_mode != "dense":
        return config
    advanced = config.advanced.replace(prior_correction=False)
    return config.replace(learning_rate=config.learning_rate * FINE_TUNE_RATE, advanced=advanced)


def starting_point(run: RunOptions, folder: RunFolder | None) -> tuple[LoadedModel | None, dict | None]:
    """The model file a run starts from (resumed or fine-tuned; ``None``: random weights)
    and, for a resumed run, its resume state."""
    if run.resume:
        if folder is None:
            raise UserInputError("resume needs the run folder of an earlier run", ("give it", "resume"))
        return folder.load()
    return (load_model(run.init) if run.init is not None else None), None


def head_rows(base: LoadedModel, values: Sequence[int], names: Sequence[str]) -> list[int | None] | None:
    """For each class of a run that starts from ``base``, the row of ``base``'s head that
    already scores it: the base class of the same name (when both are named), else of the
    same label value; ``None`` where ``base`` has no such class. ``None`` for all of it when
    the classes are the base's, in its order (its head is kept as it is)."""
    by_name = {n.lower(): i for i, n in enumerate(base.class_names) if n}
    by_value = {int(v): i for i, v in enumerate(base.class_values)}
    rows = []
    for value, name in zip(values, names or [""] * len(values)):
        rows.append(by_name.get(name.lower()) if name and by_name else by_value.get(int(value)))
    return None if rows == list(range(len(base.class_values))) else rows


def build_network(
    spec: ModelSpec,
    seed: int,
    base: LoadedModel | None,
    rows: Sequence[int | None] | None,
    device: torch.device,
) -> tuple[torch.nn.Module, torch.memory_format]:
    """The network of ``spec`` (initialised from ``seed``, then with the weights of ``base``
    that fit), on ``device``, and the memory format its convolutions run fastest in.

    ``rows`` (:func:`head_rows`) adapts ``base``'s head to other classes: class ``i`` of
    the new head takes row ``rows[i]`` of the old one (a class of the same name: fine-tuning
    keeps what the head knew of it) or starts from ``seed``'s initialisation (``None``).
    ``rows=None`` keeps the head as it is."""
    torch.manual_seed(seed)
    model = build_model(spec)
    if base is not None:
        state = base.model.state_dict()
        if rows is not None:
            head = tuple(f"{name}." for name in model.class_layers)
            old_head = {k: v for k, v in state.items() if k.startswith(head)}
            state = {k: v for k, v in state.items() if not k.startswith(head)}
            _adapt_head(model, old_head, rows, len(base.class_values))
        load_matching_weights(model, state)
    model.to(device)
    memory_format = channels_last_format(model, device)
    if device.type == "cpu":
        model.to(memory_format=memory_format)
    return model, memory_format


def _adapt_head(model: torch.nn.Module, old: dict[str, torch.Tensor], rows, old_classes: int) -> None:
    """Copy the old head's rows into the new head's classes that have one. Heads whose
    tensors carry the classes elsewhere than in their first axis (FCN's class-to-class
    up-sampling) start afresh."""
    new = model.state_dict()
    if any(k not in new or v.shape[0] != old_classes or (v.ndim > 1 and v.shape[1] == old_classes)
           for k, v in old.items()):  # fmt: skip
        return
    with torch.no_grad():
        for key, tensor in old.items():
            for i, row in enumerate(rows):
                if row is not None:
                    new[key][i] = tensor[row]
    model.load_state_dict(new)


def check_3d(
    model: torch.nn.Module, spec: ModelSpec, images: Sequence[np.ndarray], config: TrainConfig
) -> None:
    """Refuse what a 3D network cannot train on (single slices, the 2D smoothness term)."""
    if model.spatial_dims != 3:
        return
    if min(image.shape[0] for image in images) < 2:
        raise UserInputError(
            f"{spec.name} segments z-stacks but the training images have a single slice",
            ("use a 2D model", "model"),
            ("check the image axes", "axes"),
        )
    if config.advanced.smoothness_weight:
        raise UserInputError("the smoothness term is for 2D models: set smoothness_weight to 0")


@dataclasses.dataclass
class TrainingData:
    """What the loop trains and validates on."""

    sampler: data_mod.PatchSampler
    val: list  # held-out (image, target) pairs
    class_weights: torch.Tensor | None
    priors: PriorEstimator | None


def prepare_data(
    images: Sequence[np.ndarray],
    labels: Sequence[np.ndarray],
    class_values: Sequence[int],
    label_mode: str,
    normalization: Normalization,
    config: TrainConfig,
    volumes: bool,
    device: torch.device,
    generator: torch.Generator,
) -> TrainingData:
    """Normalised, encoded training items (labelled slices, or labelled stacks as volumes
    for 3D models, which get no validation split), the patch sampler, class weights and the
    class-prior estimator (sparse labels; painted objects have their own,
    :func:`~napari_unetseg.core.priors.object_prior_bias`); an object run's sampler also
    weighs where objects touch (:mod:`~napari_unetseg.core.contacts`). Raises when nothing
    of ``class_values`` is labelled."""
    advanced = config.advanced
    items = data_mod.training_items(images, labels, class_values, label_mode, normalization, volumes)
    if not items:
        raise UserInputError("no painted pixels of the run's classes are left")
    fraction = config.validation_fraction
    train, val = data_mod.split_validation(items, fraction, config.seed, allowed=not volumes)
    train_x, train_y = [x for x, _ in train], [y for _, y in train]
    patch = (config.patch_depth, config.patch_size, config.patch_size) if volumes else config.patch_size
    classes = len(class_values)
    levels = [contact_levels(y) for y in train_y] if config.objects else None
    sampler = data_mod.PatchSampler(
        train_x, train_y, patch, classes, advanced.labelled_sampling, device, generator, levels
    )
    balance = label_mode == "sparse" if advanced.class_balance is None else advanced.class_balance
    weights = data_mod.class_weights(train_y, classes) if balance else None
    priors = None
    if advanced.prior_correction and label_mode == "sparse" and not volumes:
        priors = PriorEstimator(train_x, train_y, classes, weights, objects=config.objects)
    class_weights = torch.from_numpy(weights).to(device) if weights is not None else None
    return TrainingData(sampler, val, class_weights, priors)

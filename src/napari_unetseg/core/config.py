"""Frozen, validated configuration objects shared by the CLI and the GUI.

Each config checks itself in ``__post_init__`` and raises :class:`UserInputError`
with a message that names the bad field and what would be accepted.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, TypeVar

from napari_unetseg.core.device import DEVICES, PRECISIONS
from napari_unetseg.core.errors import UserInputError
from napari_unetseg.core.tiling import overlap_pixels

T = TypeVar("T")

NORMS = ("batch", "instance", "group", "none")
UPSAMPLES = ("bilinear", "transpose")
LABEL_MODES = ("sparse", "dense")
BLENDINGS = ("gaussian", "constant")


def _check_choice(name: str, value: Any, choices: tuple) -> None:
    if value not in choices:
        raise UserInputError(f"{name} must be one of {', '.join(map(str, choices))}, got {value!r}")


def _check_positive(name: str, value: Any, minimum: float = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < minimum:
        raise UserInputError(f"{name} must be a number >= {minimum}, got {value!r}")


class _ConfigMixin:
    """``to_dict`` / ``from_dict`` / ``replace`` for the dataclasses below."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls: type[T], data: dict[str, Any]) -> T:
        known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - known)
        if unknown:
            raise UserInputError(
                f"unknown {cls.__name__} option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        return cls(**data)

    def replace(self: T, **changes: Any) -> T:
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]


@dataclass(frozen=True)
class ModelSpec(_ConfigMixin):
    """Everything needed to rebuild a network.

    Parameters
    ----------
    name : str
        Registry name, e.g. ``"unet"`` or ``"unetplusplus"``.
    in_channels, num_classes : int
        Input channels and output classes.
    depth : int
        Number of down-sampling steps (the input is padded to a multiple of ``2**depth``).
    base_channels : int
        Width of the first level; each level doubles it.
    norm : str
        ``batch``, ``instance``, ``group`` or ``none``.
    upsample : str
        ``bilinear`` (+1x1 conv) or ``transpose`` (learned 2x2 transposed conv).
    deep_supervision : bool
        UNet++ only: train a 1x1 head on every nested decoder node ``X(0,j)``.
    head : int or None
        UNet++ only: predict from head ``L1..L{depth}`` with the deeper part pruned
        away; ``None`` uses the last head.
    anisotropy : float
        3D models only: the z step of the stacks over their pixel size (e.g. 4 for
        1 um slices of 0.25 um pixels). z is not pooled in the first levels until the
        voxels are about cubic (see :func:`~napari_unetseg.core.models.blocks.pool_sizes`).
    """

    name: str = "unet"
    in_channels: int = 1
    num_classes: int = 2
    depth: int = 4
    base_channels: int = 32
    norm: str = "batch"
    upsample: str = "bilinear"
    deep_supervision: bool = True
    head: int | None = None
    anisotropy: float = 1.0

    def __post_init__(self) -> None:
        _check_positive("in_channels", self.in_channels)
        _check_positive("num_classes", self.num_classes, 2)
        _check_positive("depth", self.depth)
        if self.depth > 6:
            raise UserInputError(f"depth must be between 1 and 6, got {self.depth}")
        _check_positive("base_channels", self.base_channels, 2)
        _check_choice("norm", self.norm, NORMS)
        _check_choice("upsample", self.upsample, UPSAMPLES)
        _check_positive("anisotropy", self.anisotropy, 0.01)
        if self.head is not None and not (1 <= self.head <= self.depth):
            raise UserInputError(f"head must be between 1 and depth={self.depth}, got {self.head}")


@dataclass(frozen=True)
class TrainConfig(_ConfigMixin):
    """How to train.

    ``label_mode='sparse'``: label 0 means "not painted" and is ignored; the classes
    are the painted values. ``'dense'``: 0 is a real class (background).

    ``class_balance``: median-frequency class weights in the loss; ``None`` = on for
    sparse labels (how much of each class was painted says nothing about the image)
    and off for dense ones (their class frequencies are the real prior).
    ``augment``: random flips/rot90s and contrast/brightness jitter of every batch.
    ``deform``: also a random rotation, scaling and elastic warp of 2D batches
    (:func:`~napari_unetseg.core.transforms.random_deformation`).
    ``patch_depth``: the z side (slices) of the training patches of 3D models.
    ``smoothness_weight``: weight of the edge-aware smoothness term on unpainted pixels
    (see :func:`~napari_unetseg.core.losses.edge_aware_smoothness`), off by default: it
    helps scribbles on thin structures (ISBI membranes: weight 10 took Dice from 0.712
    to 0.748) but merges nearby blobs such as nuclei (synthetic sample: 0.735 to 0.41),
    see docs/benchmarks.md. ``smoothness_sigma``: the intensity difference
    (normalised image) at which neighbours count as across an edge.
    ``consistency_weight``: weight of a flip/rot90 consistency term on all pixels
    (:func:`~napari_unetseg.core.losses.transform_consistency`), for sparse labels; off
    by default; each step then runs the network on two views of the batch (ISBI
    scribbles: weight 10 took Dice from 0.742 to 0.775; dense labels lose by it).
    ``consistency_zoom``: the second view of 2D batches is also zoomed by a random factor
    in ``[1/z, z]`` (the target resampled the same way); 1 = no zoom. Against no zoom,
    ``z = 2`` (default) took synthetic nuclei from 0.927 to 0.984 and 0.709 to 0.790 (two
    seeds) and rescued a failed ISBI training seed (0.634 to 0.769), but lost 0.02-0.03 on
    three other ISBI runs (docs/benchmarks.md).
    ``prior_correction``: for sparse labels on 2D models, estimate the class frequencies
    of the unpainted pixels at every save and correct the network's scores for them
    (:mod:`~napari_unetseg.core.priors`): painted strokes over-represent thin classes,
    which otherwise come out too thick (synthetic nuclei: Dice 0.735 to 0.929; ISBI
    membranes: 0.712 to 0.735).
    ``tries``: start this many runs with seeds ``seed``, ``seed + 1``, ...; after
    ``try_steps`` steps (default: a quarter of ``steps``) keep the one whose training loss
    over the second half of those steps is lowest and train it to the end
    (:class:`~napari_unetseg.core.training.BestOfTries`). Runs on a few strokes can fail
    with one seed and work with another, and the failed ones fit the strokes worse from
    early on (ISBI scribbles, docs/benchmarks.md). Costs ``tries - 1`` times
    ``try_steps`` extra steps.
    """

    label_mode: str = "sparse"
    steps: int = 500
    patch_size: int = 128
    patch_depth: int = 16
    batch_size: int = 8
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    steps_per_epoch: int = 50
    validation_fraction: float = 0.2
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"
    augment: bool = True
    deform: bool = False
    dice_weight: float = 1.0
    class_balance: bool | None = None
    labelled_sampling: float = 0.9
    smoothness_weight: float = 0.0
    smoothness_sigma: float = 0.05
    consistency_weight: float = 0.0
    consistency_zoom: float = 2.0
    prior_correction: bool = True
    percentile_low: float = 1.0
    percentile_high: float = 99.8
    tries: int = 1
    try_steps: int | None = None

    def __post_init__(self) -> None:
        _check_choice("label_mode", self.label_mode, LABEL_MODES)
        _check_positive("steps", self.steps)
        _check_positive("patch_size", self.patch_size, 16)
        _check_positive("patch_depth", self.patch_depth, 2)
        _check_positive("batch_size", self.batch_size)
        _check_positive("learning_rate", self.learning_rate, 1e-12)
        _check_positive("steps_per_epoch", self.steps_per_epoch)
        if not 0 <= self.validation_fraction < 1:
            raise UserInputError("validation_fraction must be in [0, 1)")
        if not 0 <= self.labelled_sampling <= 1:
            raise UserInputError("labelled_sampling must be in [0, 1]")
        if not 0 <= self.percentile_low < self.percentile_high <= 100:
            raise UserInputError("need 0 <= percentile_low < percentile_high <= 100")
        _check_positive("smoothness_weight", self.smoothness_weight, 0)
        _check_positive("smoothness_sigma", self.smoothness_sigma, 1e-6)
        _check_positive("consistency_weight", self.consistency_weight, 0)
        _check_positive("consistency_zoom", self.consistency_zoom, 1)
        _check_choice("device", self.device, DEVICES)
        _check_choice("precision", self.precision, PRECISIONS)
        if isinstance(self.tries, bool) or not isinstance(self.tries, int) or self.tries < 1:
            raise UserInputError(f"tries must be a whole number >= 1, got {self.tries!r}")
        if self.try_steps is not None:
            _check_positive("try_steps", self.try_steps)
        if self.tries > 1 and self.first_steps() >= self.steps:
            raise UserInputError(
                f"try_steps ({self.first_steps()}) must be fewer than steps ({self.steps}): "
                "the tries are the start of the run"
            )

    def first_steps(self) -> int:
        """How many steps each of the ``tries`` runs before one is kept."""
        return self.try_steps if self.try_steps is not None else max(1, self.steps // 4)


@dataclass(frozen=True)
class PredictConfig(_ConfigMixin):
    """How to predict: overlap-tile with mirror padding and weighted blending.

    ``tile_size`` is the largest tile side; tiles are shrunk to cover the image evenly
    (see :func:`~napari_unetseg.core.tiling.effective_tile`). Large tiles recompute
    less context: the default 1024 px with the default ``overlap`` of 64 px (a quarter
    of tiles under 256 px; a whole number = pixels, below 1 = a fraction of the tile)
    predicts a 512x512 view in one tile. ``tile_depth``: the z side of the tiles of
    3D models (in slices).
    """

    tile_size: int = 1024
    overlap: float | None = None
    batch_size: int = 4
    tile_depth: int = 32
    blending: str = "gaussian"
    tta: bool = False
    device: str = "auto"
    precision: str = "auto"

    def __post_init__(self) -> None:
        _check_positive("tile_size", self.tile_size, 16)
        overlap_pixels(self.overlap, self.tile_size)  # raises UserInputError
        _check_positive("batch_size", self.batch_size)
        _check_positive("tile_depth", self.tile_depth, 4)
        _check_choice("blending", self.blending, BLENDINGS)
        _check_choice("device", self.device, DEVICES)
        _check_choice("precision", self.precision, PRECISIONS)


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

"""Frozen, validated configuration objects: the one home of every default.

The CLI and the docks build the same objects: :class:`ModelSpec` (the model recipe),
:class:`TrainConfig` (how to train; research options nested in
:class:`AdvancedOptions`), :class:`PredictConfig` and :class:`RunOptions` (where a run
lives and how it starts). ``unetseg`` takes its flag defaults and the docks their
initial values from these classes. Each config checks itself in ``__post_init__`` and
raises :class:`UserInputError` naming the bad field (its ``subject``).

Files written by earlier versions (``config.json`` of a run folder, ``--config`` files
(read by :mod:`~napari_unetseg.core.workflows`),
the ``train_config`` of model files) have one flat ``train`` section;
:func:`upgrade_sections` moves its keys to where they live now.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, TypeVar

from napari_unetseg.core.errors import UserInputError
from napari_unetseg.core.normalization import Normalization
from napari_unetseg.core.tiling import overlap_pixels

T = TypeVar("T")

DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
NORMS = ("batch", "instance", "group", "none")
UPSAMPLES = ("bilinear", "transpose")
LABEL_MODES = ("sparse", "dense")
BLENDINGS = ("gaussian", "constant")


def _check_choice(name: str, value: Any, choices: tuple) -> None:
    if value not in choices:
        raise UserInputError(f"must be one of {', '.join(map(str, choices))}, got {value!r}", subject=name)


def _check_positive(name: str, value: Any, minimum: float = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < minimum:
        raise UserInputError(f"must be a number >= {minimum}, got {value!r}", subject=name)


def _check_fraction(name: str, value: Any, top_open: bool = False) -> None:
    inside = 0 <= value < 1 if top_open else 0 <= value <= 1
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not inside:
        raise UserInputError(f"must be in [0, {'1)' if top_open else '1]'}, got {value!r}", subject=name)


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
    """The model recipe: the network, and how its input images are normalised.

    Parameters
    ----------
    name : str
        Registry name, e.g. ``"unet"`` or ``"unetplusplus"`` (``unetseg models``).
    in_channels, num_classes : int
        Input channels and output classes (set from the data when training).
    depth : int
        Number of down-sampling steps (the input is padded to a multiple of ``2**depth``).
    base_channels : int
        Width of the first level; each level doubles it.
    norm : str
        ``batch``, ``instance``, ``group`` or ``none``.
    upsample : str
        ``bilinear`` (+1x1 conv) or ``transpose`` (learned 2x2 transposed conv).
    deep_supervision : bool
        UNet++ / UNet 3+: train a head on every decoder level.
    head : int or None
        UNet++ only: predict from head ``L1..L{depth}`` with the deeper part pruned
        away; ``None`` uses the last head.
    anisotropy : float
        3D models only: the z step of the stacks over their pixel size (z is not pooled
        in the first levels until the voxels are about cubic).
    normalization : Normalization
        The percentiles of each image that map to 0 and 1. A fine-tuned model keeps
        the recipe of the model it starts from.
    """

    name: str = "unet"
    in_channels: int = 1
    num_classes: int = 2
    depth: int = 4
    base_channels: int = 16
    norm: str = "batch"
    upsample: str = "bilinear"
    deep_supervision: bool = True
    head: int | None = None
    anisotropy: float = 1.0
    normalization: Normalization = Normalization()

    def __post_init__(self) -> None:
        _check_positive("in_channels", self.in_channels)
        _check_positive("num_classes", self.num_classes, 2)
        _check_positive("depth", self.depth)
        if self.depth > 6:
            raise UserInputError(f"must be between 1 and 6, got {self.depth}", subject="depth")
        _check_positive("base_channels", self.base_channels, 2)
        _check_choice("norm", self.norm, NORMS)
        _check_choice("upsample", self.upsample, UPSAMPLES)
        _check_positive("anisotropy", self.anisotropy, 0.01)
        if self.head is not None and not (1 <= self.head <= self.depth):
            raise UserInputError(f"must be between 1 and depth={self.depth}, got {self.head}", subject="head")
        if isinstance(self.normalization, dict):  # from a config file or config.json
            object.__setattr__(self, "normalization", Normalization.from_dict(self.normalization))

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "normalization": self.normalization.to_dict()}

    def network_dict(self) -> dict[str, Any]:
        """The network's fields only: the ``spec`` of a model file, which keeps the
        normalisation in its own entry (so earlier versions still read new files)."""
        data = self.to_dict()
        del data["normalization"]
        return data


@dataclass(frozen=True)
class AdvancedOptions(_ConfigMixin):
    """Research options of the training recipe: neither a flag nor a dock control sets
    them (a ``--config`` file's ``[train.advanced]`` section does). What each did on the
    benchmarks is in docs/benchmarks.md; docs/engine.md says how each works.

    Parameters
    ----------
    weight_decay : float
        AdamW weight decay.
    augment : bool
        Random flips/rot90s and contrast/brightness jitter of every batch.
    deform : bool
        Also a random rotation, scaling and elastic warp of 2D batches.
    zoom : float
        Also a random zoom of each 2D patch, log-uniform in [1/zoom, zoom] (1 = off): the
        starter models' training (``scripts/train_starters.py``), to see objects at many sizes.
    dice_weight : float
        Weight of the soft Dice term beside the cross-entropy.
    class_balance : bool or None
        Median-frequency class weights in the loss; ``None``: on for sparse labels,
        off for dense ones.
    labelled_sampling : float
        Share of patches centred on a labelled pixel (the rest anywhere in a labelled slice).
    smoothness_weight, smoothness_sigma : float
        Edge-aware smoothness term on unpainted pixels (2D; 0 = off) and the intensity
        step counted as an edge.
    consistency_weight, consistency_zoom : float
        The flip/rot90 consistency term that :attr:`TrainConfig.learn_unpainted` turns
        on: its weight, and the largest zoom of its second view (1 = no zoom).
    prior_correction : bool
        Sparse labels, 2D models: correct the scores for the class frequencies of the
        unpainted pixels (estimated at every save).
    try_steps : int or None
        Steps of each try when :attr:`TrainConfig.tries` > 1; ``None``: a quarter of the steps.
    """

    weight_decay: float = 1e-4
    augment: bool = True
    deform: bool = False
    zoom: float = 1.0
    dice_weight: float = 1.0
    class_balance: bool | None = None
    labelled_sampling: float = 0.9
    smoothness_weight: float = 0.0
    smoothness_sigma: float = 0.05
    consistency_weight: float = 10.0
    consistency_zoom: float = 2.0
    prior_correction: bool = True
    try_steps: int | None = None

    def __post_init__(self) -> None:
        _check_positive("weight_decay", self.weight_decay, 0)
        _check_positive("dice_weight", self.dice_weight, 0)
        _check_fraction("labelled_sampling", self.labelled_sampling)
        _check_positive("smoothness_weight", self.smoothness_weight, 0)
        _check_positive("smoothness_sigma", self.smoothness_sigma, 1e-6)
        _check_positive("consistency_weight", self.consistency_weight, 0)
        _check_positive("consistency_zoom", self.consistency_zoom, 1)
        _check_positive("zoom", self.zoom, 1)
        if self.try_steps is not None:
            _check_positive("try_steps", self.try_steps)


@dataclass(frozen=True)
class TrainConfig(_ConfigMixin):
    """How to train: what a user chooses (the ``unetseg train`` flags, the Train dock).

    Parameters
    ----------
    label_mode : str
        ``sparse``: label 0 means "not painted" and is ignored, the classes are the
        painted values. ``dense``: 0 is a real class (background).
    steps : int
        Optimisation steps.
    patch_size, patch_depth : int
        Side of the training patches in pixels; their depth in slices (3D models).
    batch_size : int
        Patches per step.
    learning_rate : float
        Peak learning rate (linear warm-up, then cosine decay).
    seed : int
        The same seed on the same labels gives the same run (on the CPU).
    tries : int
        Start this many runs (seeds ``seed``, ``seed + 1``, ...), keep the one whose
        training loss is lowest after a quarter of the steps and train it on.
    learn_unpainted : bool
        Sparse labels: also train on the unpainted pixels, asking for the same answer
        on a flipped, turned and zoomed copy of every patch (about twice the cost of a step).
    objects : bool
        The labels are objects (one id per object, 0 = background, every object whole):
        the network learns background, interior and boundary
        (:mod:`~napari_unetseg.core.instances`) and prediction gives objects. 2D models.
    validation_fraction : float
        Share of the labelled slices held out for validation (when there are 4 or more).
    steps_per_epoch : int or None
        Steps between model files and validation; ``None``: :meth:`epoch_steps`.
    device, precision : str
        ``auto``, ``cpu``, ``cuda`` or ``mps``; ``auto``, ``fp32``, ``bf16`` or ``fp16``.
    advanced : AdvancedOptions
        The research options of the recipe.
    """

    label_mode: str = "sparse"
    steps: int = 500
    patch_size: int = 128
    patch_depth: int = 16
    batch_size: int = 8
    learning_rate: float = 1e-3
    seed: int = 0
    tries: int = 1
    learn_unpainted: bool = False
    objects: bool = False
    validation_fraction: float = 0.2
    steps_per_epoch: int | None = None
    device: str = "auto"
    precision: str = "auto"
    advanced: AdvancedOptions = AdvancedOptions()

    def __post_init__(self) -> None:
        if isinstance(self.advanced, dict):
            object.__setattr__(self, "advanced", AdvancedOptions.from_dict(self.advanced))
        _check_choice("label_mode", self.label_mode, LABEL_MODES)
        _check_positive("steps", self.steps)
        _check_positive("patch_size", self.patch_size, 16)
        _check_positive("patch_depth", self.patch_depth, 2)
        _check_positive("batch_size", self.batch_size)
        _check_positive("learning_rate", self.learning_rate, 1e-12)
        if self.steps_per_epoch is not None:
            _check_positive("steps_per_epoch", self.steps_per_epoch)
        _check_fraction("validation_fraction", self.validation_fraction, top_open=True)
        _check_choice("device", self.device, DEVICES)
        _check_choice("precision", self.precision, PRECISIONS)
        if isinstance(self.tries, bool) or not isinstance(self.tries, int) or self.tries < 1:
            raise UserInputError(f"must be a whole number >= 1, got {self.tries!r}", subject="tries")
        if self.tries > 1 and self.first_steps() >= self.steps:
            raise UserInputError(
                f"the tries ({self.first_steps()} steps each) must be fewer steps "
                f"than the run ({self.steps})",
                ("ask for more steps", "steps"),
                ("shorter tries", "try_steps"),
                ("one try", "tries"),
            )

    def first_steps(self) -> int:
        """How many steps each of the ``tries`` runs before one is kept."""
        chosen = self.advanced.try_steps
        return chosen if chosen is not None else max(1, self.steps // 4)

    def epoch_steps(self) -> int:
        """Steps between model files: ``steps_per_epoch``, or by default a quarter of the
        run up to 50 (a short run still saves and validates a few times)."""
        if self.steps_per_epoch is not None:
            return self.steps_per_epoch
        return max(1, min(50, self.steps // 4))

    def consistency_weight(self) -> float:
        """The weight of the consistency term in the loss (0 when it is off)."""
        return self.advanced.consistency_weight if self.learn_unpainted else 0.0

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Also reads the flat ``train`` section of earlier versions (:func:`upgrade_sections`)."""
        _, train = upgrade_sections({}, data)
        return super().from_dict(train)


@dataclass(frozen=True)
class PredictConfig(_ConfigMixin):
    """How to predict: overlap-tile with mirror padding and weighted blending.

    Parameters
    ----------
    tile_size : int
        The largest tile side; tiles are shrunk to cover the image evenly. Large tiles
        recompute less context: the default predicts a 512x512 view in one tile.
    overlap : float or None
        Shared by neighbouring tiles: a whole number of pixels, or a fraction of the tile
        below 1; ``None``: 64 px (a quarter of tiles under 256 px).
    batch_size : int
        Tiles per forward pass.
    tile_depth : int
        The z side of the tiles of 3D models (in slices).
    blending : str
        ``gaussian`` (tile centres count most) or ``constant``.
    tta : bool
        Average over flips (4x slower).
    match_size : bool
        2D object models: predict a slice again, zoomed, where its objects are far smaller
        or larger than those the model learnt (:mod:`~napari_unetseg.core.object_scale`).
    device, precision : str
        As in :class:`TrainConfig`.
    block_size : int
        Block-wise prediction (``unetseg predict --dask``): the Y and X side of a block,
        the unit of work of a task and a chunk of the output store. A few tiles, so that
        the tiles shared with the neighbouring blocks (computed by both) stay a small part.
    block_depth : int
        The same in Z, for 3D models (at least the tile depth).
    """

    tile_size: int = 1024
    overlap: float | None = None
    batch_size: int = 4
    tile_depth: int = 32
    blending: str = "gaussian"
    tta: bool = False
    match_size: bool = True
    device: str = "auto"
    precision: str = "auto"
    block_size: int = 4096
    block_depth: int = 128

    def __post_init__(self) -> None:
        _check_positive("tile_size", self.tile_size, 16)
        _check_positive("block_size", self.block_size, 64)
        _check_positive("block_depth", self.block_depth, 4)
        overlap_pixels(self.overlap, self.tile_size)  # raises UserInputError
        _check_positive("batch_size", self.batch_size)
        _check_positive("tile_depth", self.tile_depth, 4)
        _check_choice("blending", self.blending, BLENDINGS)
        _check_choice("device", self.device, DEVICES)
        _check_choice("precision", self.precision, PRECISIONS)


AUTO_START = "auto"  # RunOptions.init: a starter that fits the labels, else random weights (auto_start.py)
AUTO_START_FIT = 0.9  # ... the least balanced accuracy on the labels for a starter to be started from


@dataclass(frozen=True)
class RunOptions:
    """Where a training run lives and how it starts.

    Parameters
    ----------
    run_dir : Path or None
        Folder for ``model.pt``, ``resume.pt``, ``config.json`` and the history;
        ``None`` keeps everything in memory.
    init : Path or None
        Model file to fine-tune from (a new head when the classes differ), or
        :data:`AUTO_START`: a shipped starter when one already fits the labels, else random
        weights (core/auto_start.py).
    resume : bool
        Continue the run in ``run_dir`` with its optimizer state and step count.
    overwrite : bool
        Allow a new run in a ``run_dir`` that already holds a model.
    """

    run_dir: Path | None = None
    init: Path | None = None
    resume: bool = False
    overwrite: bool = False

    def __post_init__(self) -> None:
        for name in ("run_dir", "init"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, Path):
                object.__setattr__(self, name, Path(value))


# -- files of earlier versions ------------------------------------------------------------

_ADVANCED = tuple(f.name for f in fields(AdvancedOptions))
_PERCENTILES = {"percentile_low": "low", "percentile_high": "high"}


def upgrade_sections(model: dict[str, Any], train: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``model`` and ``train`` sections with the flat keys of earlier versions moved.

    Before 0.2 every training option sat in ``train``: the research options go to
    ``train["advanced"]``, the percentiles to ``model["normalization"]``, and a
    ``consistency_weight`` above 0 becomes ``learn_unpainted`` with that weight.
    Sections in today's layout come back unchanged (copied).
    """
    model, train = dict(model), dict(train)
    advanced = dict(train.pop("advanced", None) or {})
    weight = train.pop("consistency_weight", None)
    if isinstance(weight, (int, float)) and not isinstance(weight, bool):
        train.setdefault("learn_unpainted", weight > 0)
        if weight > 0:
            advanced.setdefault("consistency_weight", weight)
    elif weight is not None:  # not a number: AdvancedOptions says so
        advanced.setdefault("consistency_weight", weight)
    for key in _ADVANCED:
        if key in train:
            advanced.setdefault(key, train.pop(key))
    normalization = dict(model.get("normalization") or {})
    for old, new in _PERCENTILES.items():
        if old in train:
            normalization.setdefault(new, train.pop(old))
    if normalization:
        model["normalization"] = {**Normalization().to_dict(), **normalization}
    if advanced:
        train["advanced"] = advanced
    return model, train


def defaults(cls: type) -> dict[str, Any]:
    """The default of every field of a config class (what help texts and docks show)."""
    instance = cls()
    return {f.name: getattr(instance, f.name) for f in fields(cls)}


__all__ = [
    "AdvancedOptions",
    "ModelSpec",
    "PredictConfig",
    "RunOptions",
    "TrainConfig",
    "defaults",
    "upgrade_sections",
]

"""Training as a generator of events, so a GUI can run it in a worker and stop it.

>>> trainer = Trainer([image_stack], [label_stack], ModelSpec("unet"), TrainConfig(steps=200))
>>> for event in trainer.run(): ...          # StepEvent / EpochEvent / PreviewEvent
>>> result = train(...)                       # the same, run to the end (CLI)

Stacks are ``(N, C, Y, X)`` images and ``(N, Y, X)`` labels; every labelled slice is a
training slice, and when there are enough of them a fraction is held out for
validation (Dice on their labelled pixels after every epoch). ``make_trainer`` gives a
:class:`BestOfTries` when ``config.tries > 1`` (several seeds started, the best kept).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from napari_unetseg.core import data as data_mod
from napari_unetseg.core.checkpoint import (
    LoadedModel,
    load_matching_weights,
    load_model,
    load_torch_safely,
    save_model,
    save_torch_atomic,
)
from napari_unetseg.core.config import ModelSpec, PredictConfig, TrainConfig
from napari_unetseg.core.device import autocast, resolve_device, resolve_precision
from napari_unetseg.core.errors import UserInputError
from napari_unetseg.core.events import (
    ChoiceEvent,
    EpochEvent,
    PreviewEvent,
    StepEvent,
    TryEvent,
    run_generator,
)
from napari_unetseg.core.history import write_history
from napari_unetseg.core.inference import channels_last_format
from napari_unetseg.core.io import check_pairs_match, write_bytes_atomic
from napari_unetseg.core.losses import edge_aware_smoothness, segmentation_loss, transform_consistency
from napari_unetseg.core.models import build_model
from napari_unetseg.core.normalization import Normalization
from napari_unetseg.core.prediction import predict_tiled, smaller_batch
from napari_unetseg.core.priors import prior_shift_bias
from napari_unetseg.core.transforms import (
    dihedral,
    random_deformation,
    random_dihedral,
    random_intensity,
    random_z_flip,
    random_zoom_grid,
    warp,
)

PREVIEW = PredictConfig()  # previews predict like the Predict dock's defaults
PRIOR_SLICES, PRIOR_CROP = 4, 512  # the class-prior estimate looks at this much of the training data

MIN_SLICES_FOR_VALIDATION = 4


@dataclass
class TrainResult:
    """What a finished (or stopped) run produced."""

    loaded: LoadedModel
    run_dir: Path | None
    stopped: bool


def _lr_factor(step: int, total: int) -> float:
    """Linear warm-up over 5 % of the steps, then cosine decay to 1 %."""
    warmup = max(1, min(100, total // 20))
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def _class_balance(config: TrainConfig, mode: str) -> bool:
    """Class weights on or off, with ``None`` resolved for the label mode.

    Sparse strokes: balance the classes (how much of each was painted is arbitrary).
    Dense labels: no (their class frequencies are the real prior).
    """
    return mode == "sparse" if config.class_balance is None else config.class_balance


class Trainer:
    """Train a segmentation network on one or several (image, labels) stacks.

    One run with ``config.seed``; ``config.tries`` is read by :func:`make_trainer`, which
    builds a :class:`BestOfTries` of several Trainers.

    Parameters
    ----------
    images, labels
        ``(N, C, Y, X)`` image stacks and matching ``(N, Y, X)`` label stacks.
    spec
        Architecture; ``in_channels`` and ``num_classes`` are set from the data.
    config
        Training options.
    run_dir
        Folder for ``model.pt``, ``resume.pt``, ``config.json`` and the history; ``None``
        keeps everything in memory.
    init_model
        Model file to fine-tune from (a new head when the classes differ).
    resume
        Continue the run in ``run_dir`` with its optimizer state and step count.
    overwrite
        Allow starting a new run in a ``run_dir`` that already holds a model.
    """

    def __init__(
        self,
        images: Sequence[np.ndarray],
        labels: Sequence[np.ndarray],
        spec: ModelSpec | None = None,
        config: TrainConfig | None = None,
        run_dir: str | Path | None = None,
        init_model: str | Path | None = None,
        resume: bool = False,
        overwrite: bool = False,
    ) -> None:
        self.config = config = config or TrainConfig()
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.device = resolve_device(config.device)
        self.dtype = resolve_precision(config.precision, self.device)
        self.normalization = Normalization(config.percentile_low, config.percentile_high)
        self._stop_requested = False
        self.batch_size = config.batch_size  # halved on out-of-memory errors
        self._preview: tuple[np.ndarray, object] | None = None
        self.preview_every = 25
        self.preview_interval_s: float | None = None
        self._last_preview = -math.inf
        self.history: list[dict] = []
        self.step = 0
        self.tries_record: dict | None = None  # set by BestOfTries on the run it keeps
        if len(images) != len(labels) or not images:
            raise UserInputError(
                f"need one label image per image, got {len(images)} images and {len(labels)} labels"
            )
        for index, (image, label) in enumerate(zip(images, labels)):
            check_pairs_match(image, label, f"#{index + 1} " if len(images) > 1 else "")
        channels = {image.shape[1] for image in images}
        if len(channels) > 1:
            raise UserInputError(f"all training images need the same channel count, got {sorted(channels)}")

        if not resume and not overwrite:
            _check_new_run_dir(self.run_dir)
        resume_state = None
        known: tuple[int, ...] = ()
        base: LoadedModel | None = None
        if resume:
            if self.run_dir is None:
                raise UserInputError("resume needs the run folder of an earlier run")
            base = load_model(self.run_dir / "model.pt")
            resume_state = load_torch_safely(self.run_dir / "resume.pt")
            known = base.class_values
            seed = base.train_config.get("seed")  # the run's own (the seed kept by tries, say)
            if isinstance(seed, int) and seed != config.seed:
                self.config = config = config.replace(seed=seed)
        elif init_model is not None:
            base = load_model(init_model)
            known = base.class_values
        mode = base.label_mode if resume and base else config.label_mode
        self.class_values = data_mod.find_class_values(labels, mode, known)
        for index, image in enumerate(images):
            self._check_size(image, f"#{index + 1} " if len(images) > 1 else "")
        spec = (base.spec if base else spec or ModelSpec()).replace(
            in_channels=channels.pop(), num_classes=len(self.class_values)
        )
        if resume and base and spec.num_classes != base.spec.num_classes:
            raise UserInputError("resume cannot add classes: fine-tune from its model file (--init) instead")
        self.spec = spec
        torch.manual_seed(config.seed)
        self.model = build_model(spec)
        if base is not None:
            state = base.model.state_dict()
            if not resume and base.class_values != self.class_values:
                new_head = tuple(f"{name}." for name in self.model.class_layers)
                state = {k: v for k, v in state.items() if not k.startswith(new_head)}
            load_matching_weights(self.model, state)
        self.model.to(self.device)
        self.memory_format = channels_last_format(self.model)
        if self.device.type == "cpu":
            self.model.to(memory_format=self.memory_format)
        self._check_3d(images)

        self.label_mode = mode
        self._prepare_data(images, labels, mode)
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: _lr_factor(s, config.steps)
        )
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.dtype == torch.float16)
        if resume_state is not None:
            self._restore(resume_state)

    # -- set-up -----------------------------------------------------------------

    def _check_3d(self, images: Sequence[np.ndarray]) -> None:
        if self.model.spatial_dims != 3:
            return
        if min(image.shape[0] for image in images) < 2:
            raise UserInputError(
                f"{self.spec.name} segments z-stacks: the training images have a single slice "
                "(use a 2D model, or check the image axes)"
            )
        if self.config.smoothness_weight:
            raise UserInputError("the smoothness term is for 2D models: set smoothness_weight to 0")

    def _check_size(self, image: np.ndarray, name: str) -> None:
        data_mod.check_image_size(image, f"training image {name}".strip())
        side = min(image.shape[-2:])
        if self.config.patch_size > side:
            raise UserInputError(
                f"patch size {self.config.patch_size} is larger than training image {name}"
                f"({image.shape[-2]}x{image.shape[-1]}): use a patch size of {side} or less (--patch-size)"
            )

    def _prepare_data(self, images, labels, mode: str) -> None:
        """Normalised, encoded training items: labelled slices (2D models) or whole
        labelled stacks as ``(C, Z, Y, X)`` volumes (3D models, no validation split)."""
        train_x, train_y, self.val = [], [], []
        rng = np.random.default_rng(self.config.seed)
        slices = []
        volumes = self.model.spatial_dims == 3
        for number, (image, label) in enumerate(zip(images, labels), start=1):
            lo, hi = self.normalization.percentiles(image)
            if np.all(hi <= lo):
                raise UserInputError(
                    f"training image #{number} is constant (every pixel is {lo[0]:g}): nothing to learn "
                    "from; check the file and its --axes"
                )
            if volumes:
                target = data_mod.encode_labels(np.asarray(label), self.class_values, mode)
                if (target >= 0).any():
                    slices.append((np.moveaxis(self.normalization.apply(image, lo, hi), 1, 0), target))
                continue
            for i in range(image.shape[0]):
                target = data_mod.encode_labels(np.asarray(label[i]), self.class_values, mode)
                if (target >= 0).any():
                    slices.append((self.normalization.apply(image[i], lo, hi), target))
        n_val = 0
        enough = len(slices) >= MIN_SLICES_FOR_VALIDATION and not volumes
        if enough and self.config.validation_fraction > 0:
            n_val = max(1, int(round(self.config.validation_fraction * len(slices))))
        val_index = set(rng.choice(len(slices), n_val, replace=False).tolist()) if n_val else set()
        for index, (x, y) in enumerate(slices):
            if index in val_index:
                self.val.append((x, y))
            else:
                train_x.append(x)
                train_y.append(y)
        self.generator = torch.Generator().manual_seed(self.config.seed)
        patch = self.config.patch_size
        self.sampler = data_mod.PatchSampler(
            train_x,
            train_y,
            (self.config.patch_depth, patch, patch) if volumes else patch,
            len(self.class_values),
            self.config.labelled_sampling,
            self.device,
            self.generator,
        )
        self.class_weights = None
        if _class_balance(self.config, mode):
            weights = data_mod.class_weights(train_y, len(self.class_values))
            self.class_weights = torch.from_numpy(weights).to(self.device)
        self.n_train_slices = len(train_x)
        self.logit_bias: tuple[float, ...] = ()
        self._prior_items: list[tuple[np.ndarray, np.ndarray]] = []
        if self.config.prior_correction and mode == "sparse" and not volumes:
            self._prior_items = _prior_sample(train_x, train_y)
            self._train_prior = _effective_prior(train_y, len(self.class_values), self.class_weights)

    def _restore(self, state: dict) -> None:
        try:
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            self.generator.set_state(state["sampler_rng"])
            torch.set_rng_state(state["torch_rng"])
            self.step = int(state["step"])
            self.history = list(state.get("history", []))
        except (KeyError, ValueError, RuntimeError) as exc:
            raise UserInputError(f"cannot resume: damaged resume.pt ({exc})") from exc
        if self.step >= self.config.steps:
            raise UserInputError(
                f"the run already has {self.step} of {self.config.steps} steps: ask for more steps (--steps)"
            )

    # -- control from another thread ---------------------------------------------

    def request_stop(self) -> None:
        """Ask the run to save and stop after the current step (thread-safe)."""
        self._stop_requested = True

    def set_preview(self, image: np.ndarray | None, key: object = None) -> None:
        """Set the ``(C, Y, X)`` raw slice to preview (normalised by its own percentiles).

        ``key`` (e.g. the slice index) comes back in the :class:`PreviewEvent`. Previews
        come every ``preview_every`` steps, or, when ``preview_interval_s`` is set, as
        soon as that many seconds have passed since the last one (the first after step 1).
        """
        if image is None:
            self._preview = None
            return
        self._preview = (self.normalization.normalize(np.asarray(image)[None])[0], key)

    def _preview_due(self) -> bool:
        if self._preview is None:
            return False
        if self.preview_interval_s is None:
            return self.step % self.preview_every == 0
        return time.perf_counter() - self._last_preview >= self.preview_interval_s

    def _make_preview(self) -> PreviewEvent:
        image, key = self._preview
        labels = self.predict_slice(image)
        self._last_preview = time.perf_counter()
        return PreviewEvent(self.step, labels, key)

    # -- the loop -----------------------------------------------------------------

    def _train_step(self) -> float:
        """One optimisation step; on out-of-memory, retry with half the batch (and say so)."""
        while True:
            try:
                return self._optimise(self.batch_size)
            except torch.OutOfMemoryError:
                self.optimizer.zero_grad(set_to_none=True)
                self.batch_size = smaller_batch(self.batch_size, self.device, "batch size")

    def _optimise(self, batch_size: int) -> float:
        x, y = self.sampler.sample(batch_size)
        if self.config.augment:
            x, y = random_dihedral(x, y, self.generator)
            if x.ndim == 5:
                x, y = random_z_flip(x, y, self.generator)
            x = random_intensity(x, self.generator)
            if self.config.deform:
                x, y = random_deformation(x, y, self.generator)
        turn, grid = 0, None
        if self.config.consistency_weight:  # a second, turned, zoomed and jittered view of the batch
            turn = int(torch.randint(1, 8, (1,), generator=self.generator))
            second = random_intensity(dihedral(x, turn), self.generator)
            if self.config.consistency_zoom > 1 and x.ndim == 4:
                b, _, h, w = x.shape
                grid = random_zoom_grid(b, h, w, self.config.consistency_zoom, self.generator)
                second = warp(second, grid)
            x = torch.cat([x, second])
        if self.device.type == "cpu":
            x = x.contiguous(memory_format=self.memory_format)
        with autocast(self.device, self.dtype):
            heads = self.model.forward_heads(x)
        consistency = 0.0
        if turn:  # ramped up over the first quarter: the early network is no teacher yet
            b = y.shape[0]
            ramp = min(1.0, (self.step + 1) / max(1.0, 0.25 * self.config.steps))
            consistency = (
                ramp
                * self.config.consistency_weight
                * transform_consistency(heads[-1][:b], heads[-1][b:], turn, grid)
            )
            heads, x = [h[:b] for h in heads], x[:b]
        loss = (
            sum(segmentation_loss(h.float(), y, self.class_weights, self.config.dice_weight) for h in heads)
            / len(heads)
            + consistency
        )
        if self.config.smoothness_weight:
            loss = loss + self.config.smoothness_weight * edge_aware_smoothness(
                heads[-1], x, sigma=self.config.smoothness_sigma
            )
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        return float(loss.detach())

    def run(self) -> Generator[StepEvent | EpochEvent | PreviewEvent, None, TrainResult]:
        """Train to ``config.steps``, yielding an event after every step."""
        cfg = self.config
        if self.run_dir is not None:
            self._write_config()
        start = time.perf_counter()
        epoch_losses: list[float] = []
        saved_at = -1
        try:
            while self.step < cfg.steps and not self._stop_requested:
                self.model.train()
                loss = self._train_step()
                self.step += 1
                epoch_losses.append(loss)
                lr = self.optimizer.param_groups[0]["lr"]
                yield StepEvent(self.step, cfg.steps, loss, lr, time.perf_counter() - start)
                if self.step % cfg.steps_per_epoch == 0 or self.step == cfg.steps:
                    yield self._end_epoch(epoch_losses, time.perf_counter() - start)
                    epoch_losses, saved_at = [], self.step
                if self._preview_due():
                    yield self._make_preview()
        except GeneratorExit:
            self._stop_requested = True
            if saved_at != self.step:
                self._update_prior()
                self._save()
            raise
        if saved_at != self.step:
            self._end_epoch(epoch_losses, time.perf_counter() - start)
        return TrainResult(self.loaded(), self.run_dir, stopped=self.step < cfg.steps)

    def _update_prior(self) -> None:
        """Re-estimate the class-prior correction on the unpainted training pixels."""
        if not self._prior_items:
            return
        self.logit_bias = ()
        posteriors = []
        for x, y in self._prior_items:
            scores = torch.from_numpy(self._scores(x))
            posteriors.append(torch.softmax(scores, 0).numpy()[:, y == data_mod.IGNORE].T)
        bias = prior_shift_bias(np.concatenate(posteriors), self._train_prior)
        self.logit_bias = tuple(float(b) for b in bias)

    def _end_epoch(self, losses: list[float], elapsed: float) -> EpochEvent:
        self._update_prior()
        validation = self.validate() if self.val else None
        row = {
            "epoch": len(self.history) + 1,
            "step": self.step,
            "train_loss": float(np.mean(losses)) if losses else float("nan"),
            "learning_rate": self.optimizer.param_groups[0]["lr"],
            "elapsed_s": round(elapsed, 3),
            **(validation or {}),
        }
        self.history.append(row)
        path = self._save()
        return EpochEvent(row["epoch"], self.step, row["train_loss"], validation, path)

    def validate(self) -> dict[str, float]:
        """Dice per class on the labelled pixels of the held-out slices."""
        inter = np.zeros(len(self.class_values))
        total = np.zeros(len(self.class_values))
        for x, y in self.val:
            pred = self._predict_index(x)
            mask = y >= 0
            for k in range(len(self.class_values)):
                p, t = (pred == k) & mask, y == k
                inter[k] += (p & t).sum()
                total[k] += p.sum() + t.sum()
        dice = np.where(total > 0, 2 * inter / np.maximum(total, 1), np.nan)
        out = {f"val_dice_{v}": float(d) for v, d in zip(self.class_values, dice)}
        out["val_dice_mean"] = float(np.nanmean(dice))
        return out

    def _predict_index(self, image: np.ndarray) -> np.ndarray:
        """Class indices of a normalised ``(C, Y, X)`` slice, prior correction included."""
        scores = self._scores(image)
        if self.logit_bias:
            scores = scores + np.asarray(self.logit_bias, scores.dtype)[:, None, None]
        return scores.argmax(0)

    def _scores(self, image: np.ndarray) -> np.ndarray:
        """Network scores ``(K, Y, X)`` of a normalised ``(C, Y, X)`` slice (a 3D model sees
        it as a one-slice volume: a rough preview)."""
        self.model.eval()
        volume = self.model.spatial_dims == 3
        scores = predict_tiled(
            self.model,
            image[:, None] if volume else image,
            tile_size=PREVIEW.tile_size,
            overlap=PREVIEW.overlap,
            batch_size=PREVIEW.batch_size,
            device=self.device,
            precision=self.config.precision,
        )
        return scores[:, 0] if volume else scores

    def predict_slice(self, image: np.ndarray) -> np.ndarray:
        """Labels (annotation numbering) of a normalised ``(C, Y, X)`` slice."""
        lut = np.asarray(self.class_values)
        return lut[self._predict_index(image)]

    # -- output -------------------------------------------------------------------

    def loaded(self) -> LoadedModel:
        """The current model with its recipe (shares the network, in eval mode)."""
        return LoadedModel(
            model=self.model.eval(),
            spec=self.spec,
            class_values=self.class_values,
            normalization=self.normalization,
            label_mode=self.label_mode,
            train_config=self.config.to_dict(),
            history=list(self.history),
            step=self.step,
            logit_bias=self.logit_bias,
        )

    def _config_record(self) -> dict:
        record = {
            "model": self.spec.to_dict(),
            "train": self.config.to_dict(),
            "class_values": list(self.class_values),
            "label_mode": self.label_mode,
        }
        if self.tries_record is not None:
            record["tries"] = self.tries_record
        return record

    def _write_config(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(self.run_dir / "config.json", json.dumps(self._config_record(), indent=2).encode())

    def adopt_run_dir(self, run_dir: str | Path) -> Path | None:
        """Save this run (config, model, resume state, history) in ``run_dir`` now and at
        every later save (a run that started in memory, such as a try of :class:`BestOfTries`)."""
        self.run_dir = Path(run_dir)
        self._write_config()
        return self._save()

    def _save(self) -> Path | None:
        if self.run_dir is None:
            return None
        path = save_model(self.loaded(), self.run_dir / "model.pt")
        save_torch_atomic(
            {
                "format": "napari-unetseg-resume",
                "step": self.step,
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "sampler_rng": self.generator.get_state(),
                "torch_rng": torch.get_rng_state(),
                "history": self.history,
            },
            self.run_dir / "resume.pt",
        )
        write_history(self.history, self.run_dir)
        return path


def _check_new_run_dir(run_dir: Path | None) -> None:
    if run_dir is not None and (run_dir / "model.pt").exists():
        raise UserInputError(
            f"{run_dir} already holds a model: resume it (--resume), "
            "choose another run folder (--out), or overwrite it (--overwrite)"
        )


def _effective_prior(targets: list[np.ndarray], num_classes: int, weights: torch.Tensor | None) -> np.ndarray:
    """The class prior the loss trains the network with: painted frequencies, times the
    class weights when there are some (median-frequency weights make it uniform over the
    painted classes)."""
    painted = np.concatenate([y[y >= 0] for y in targets])
    prior = np.bincount(painted, minlength=num_classes)[:num_classes].astype(np.float64)
    if weights is not None:
        prior *= weights.cpu().numpy()
    return prior / max(prior.sum(), 1e-12)


def _prior_sample(images: list[np.ndarray], targets: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Up to :data:`PRIOR_SLICES` evenly spaced slices, centre crops of at most
    :data:`PRIOR_CROP` pixels a side: enough pixels for a prior, a bounded cost per save."""
    picks = np.unique(np.linspace(0, len(images) - 1, min(PRIOR_SLICES, len(images))).round().astype(int))
    sample = []
    for i in picks:
        h, w = targets[i].shape
        top, left = max(0, (h - PRIOR_CROP) // 2), max(0, (w - PRIOR_CROP) // 2)
        window = (slice(top, top + PRIOR_CROP), slice(left, left + PRIOR_CROP))
        if (targets[i][window] == data_mod.IGNORE).any():
            sample.append((images[i][(slice(None), *window)], targets[i][window]))
    return sample


class BestOfTries:
    """Several starts of one run (``TrainConfig.tries``); the one that fits best goes on.

    Try ``k`` is the run with seed ``config.seed + k``. Each runs ``config.first_steps()``
    steps, one after the other, and waits; the try with the lowest mean training loss over
    the second half of those steps (no validation labels needed) then trains to
    ``config.steps`` and is the only one saved to ``run_dir``. A kept try is exactly the
    run of its seed alone: each try owns its sampler, and the global torch random state
    is put back when it goes on. Two tries are held in memory at most.

    Same interface as :class:`Trainer` (``run``, ``request_stop``, ``set_preview``,
    ``preview_interval_s``); the events gain a :class:`TryEvent` before each try and a
    :class:`ChoiceEvent` when one is kept. Stopping during the tries keeps the try that
    is running (saved to ``run_dir`` as a stopped run, which can be resumed).
    """

    def __init__(
        self,
        images: Sequence[np.ndarray],
        labels: Sequence[np.ndarray],
        spec: ModelSpec | None = None,
        config: TrainConfig | None = None,
        run_dir: str | Path | None = None,
        init_model: str | Path | None = None,
        overwrite: bool = False,
    ) -> None:
        self.config = config = config or TrainConfig()
        self.run_dir = Path(run_dir) if run_dir is not None else None
        if not overwrite:
            _check_new_run_dir(self.run_dir)
        self._build = lambda k: Trainer(
            images, labels, spec, config.replace(seed=config.seed + k, tries=1), init_model=init_model
        )
        self._first = self._build(0)  # bad input fails here, before anything runs
        self.current: Trainer | None = None
        self.preview_interval_s: float | None = None
        self._preview: tuple[np.ndarray | None, object] = (None, None)
        self._stop_requested = False

    def request_stop(self) -> None:
        """Ask the running try (or the kept run) to save and stop after the current step."""
        self._stop_requested = True
        if self.current is not None:
            self.current.request_stop()

    def set_preview(self, image: np.ndarray | None, key: object = None) -> None:
        """As :meth:`Trainer.set_preview`, for whichever try is running."""
        self._preview = (image, key)
        if self.current is not None:
            self.current.set_preview(image, key)

    def _start(self, trainer: Trainer) -> Trainer:
        self.current = trainer
        trainer.preview_interval_s = self.preview_interval_s
        trainer.set_preview(*self._preview)
        if self._stop_requested:
            trainer.request_stop()
        return trainer

    def run(self) -> Generator:
        """Run the tries, then the kept one to the end; returns its :class:`TrainResult`."""
        cfg, steps = self.config, self.config.first_steps()
        first = steps // 2 + 1  # the loss over the second half of the tries picks the run
        best = None  # (loss, seed, trainer, events, torch random state)
        losses: dict[int, float] = {}
        for k in range(cfg.tries):
            if self._stop_requested and best is not None:
                break  # stopped between two tries: go on with the best so far, which stops
            seed = cfg.seed + k
            trainer = self._start(self._first if k == 0 else self._build(k))
            self._first = None
            yield TryEvent(k + 1, cfg.tries, seed, steps)
            events, step_losses = trainer.run(), []
            while len(step_losses) < steps:
                try:
                    event = next(events)
                except StopIteration as stop:  # stopped by the user: keep this try
                    trainer.tries_record = {"stopped_during_try": k + 1, "losses": losses}
                    if self.run_dir is not None:
                        trainer.adopt_run_dir(self.run_dir)
                    return TrainResult(stop.value.loaded, self.run_dir, stopped=True)
                if isinstance(event, StepEvent):
                    step_losses.append(event.loss)
                yield event
            losses[seed] = float(np.mean(step_losses[first - 1 :]))
            candidate = (losses[seed], seed, trainer, events, _random_state())
            if best is None or candidate[0] < best[0]:
                best, candidate = candidate, best
            if candidate is not None:
                candidate[3].close()  # the worse of the two is dropped
        _, seed, trainer, events, state = best
        _set_random_state(state)
        trainer.tries_record = {"losses": losses, "kept": seed, "steps": [first, steps]}
        self.current = trainer
        if self._stop_requested:
            trainer.request_stop()
        yield ChoiceEvent(seed, dict(losses), first, steps)
        if self.run_dir is not None:
            trainer.adopt_run_dir(self.run_dir)
        return (yield from events)


def _random_state() -> tuple:
    """The global torch random state (CPU, and CUDA when there is one)."""
    return torch.get_rng_state(), torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None


def _set_random_state(state: tuple) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state_all(state[1])


def make_trainer(
    images: Sequence[np.ndarray],
    labels: Sequence[np.ndarray],
    spec: ModelSpec | None = None,
    config: TrainConfig | None = None,
    run_dir: str | Path | None = None,
    init_model: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
) -> Trainer | BestOfTries:
    """A :class:`BestOfTries` when ``config.tries > 1`` on a new run, else a :class:`Trainer`
    (a resumed run goes on with the seed that was kept)."""
    config = config or TrainConfig()
    if config.tries > 1 and not resume:
        return BestOfTries(images, labels, spec, config, run_dir, init_model, overwrite)
    return Trainer(images, labels, spec, config, run_dir, init_model, resume, overwrite)


def train(*args, on_event=None, **kwargs) -> TrainResult:
    """Build a trainer (:func:`make_trainer`) and run it to the end; ``on_event`` sees every event."""
    return run_generator(make_trainer(*args, **kwargs).run(), on_event)

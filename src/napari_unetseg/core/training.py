"""Training as a generator of events, so a GUI can run it in a worker and stop it.

>>> trainer = make_trainer([image_stack], [label_stack], ModelSpec("unet"), TrainConfig(steps=200))
>>> for event in trainer.run(): ...          # StepEvent / EpochEvent / PreviewEvent
>>> result = train(...)                       # the same, run to the end

Stacks are ``(N, C, Y, X)`` images and ``(N, Y, X)`` labels; every labelled slice is a
training slice, and when there are enough of them a fraction is held out for
validation (Dice on their labelled pixels after every epoch). The fronts come in
through :func:`napari_unetseg.core.jobs.start_training`. Where the rest lives: the run
folder in :mod:`~napari_unetseg.core.run_folder`, the tries in
:mod:`~napari_unetseg.core.tries`, the class-prior correction in
:mod:`~napari_unetseg.core.priors`, the patches in :mod:`~napari_unetseg.core.data`, the
set-up (starting point, network, data, schedule) in :mod:`~napari_unetseg.core.training_setup`.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Generator, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from napari_unetseg.core import data as data_mod
from napari_unetseg.core.auto_start import NONE_APPLIES, best_starter, is_auto
from napari_unetseg.core.checkpoint import LoadedModel
from napari_unetseg.core.class_names import labels_dtype, name_classes
from napari_unetseg.core.config import ModelSpec, PredictConfig, RunOptions, TrainConfig
from napari_unetseg.core.device import autocast, resolve_device, resolve_precision
from napari_unetseg.core.errors import UserInputError
from napari_unetseg.core.events import (
    EpochEvent,
    LabelsEvent,
    PreviewEvent,
    StartEvent,
    StepEvent,
    TrainResult,
    run_generator,
)
from napari_unetseg.core.inference import inference_copy
from napari_unetseg.core.instances import ObjectClasses
from napari_unetseg.core.losses import training_loss
from napari_unetseg.core.metrics import masked_dice
from napari_unetseg.core.object_scale import zoomed, zoomed_back, zoomed_stack
from napari_unetseg.core.parallel import distributed_heads, is_main, mean_over_ranks, rank_seed
from napari_unetseg.core.run_folder import RunFolder
from napari_unetseg.core.tiler import Tiler, smaller_batch
from napari_unetseg.core.training_setup import (
    build_network,
    check_3d,
    fine_tuning_config,
    head_rows,
    lr_factor,
    prepare_data,
    starting_point,
)
from napari_unetseg.core.transforms import augment, second_view
from napari_unetseg.core.tries import BestOfTries

MAX_BAD_STEPS = 20  # steps in a row with NaN or infinite gradients before a run gives up
PREVIEW = PredictConfig()  # previews, validation and priors predict like the Predict dock's defaults

__all__ = ["BestOfTries", "TrainResult", "Trainer", "make_trainer", "train"]


class Trainer:
    """Train a segmentation network on one or several (image, labels) stacks.

    One run with ``config.seed``; :func:`make_trainer` builds a :class:`BestOfTries` of
    several Trainers when ``config.tries > 1``.

    Parameters
    ----------
    images, labels
        ``(N, C, Y, X)`` image stacks and matching ``(N, Y, X)`` label stacks.
    spec
        The model recipe; ``in_channels`` and ``num_classes`` are set from the data (a
        fine-tuned or resumed run takes the recipe of its model file).
    config
        Training options.
    run
        The run folder (``None``: in memory), the model file to fine-tune from, and
        whether to resume the run in the folder or overwrite it.
    class_names
        What the classes are called: one name per class in the order of the label
        values, or value -> name; the model file keeps them (a fine-tuned or resumed
        run keeps its model file's names for the classes not named here).
    """

    def __init__(
        self,
        images: Sequence[np.ndarray],
        labels: Sequence[np.ndarray],
        spec: ModelSpec | None = None,
        config: TrainConfig | None = None,
        run: RunOptions | None = None,
        class_names: Sequence[str] | Mapping[int, str] | None = None,
    ) -> None:
        run = run or RunOptions()
        self.config = config or TrainConfig()
        self.folder = RunFolder(run.run_dir) if run.run_dir is not None else None
        self.device = resolve_device(self.config.device)
        self._stop_requested = self._discarded = False
        self.batch_size = self.config.batch_size  # halved on out-of-memory errors
        self.bad_steps = 0  # steps in a row skipped for NaN or infinite gradients
        self._images = list(images)  # the raw stacks: the preview reads its slice from the first
        self._preview: int | None = None  # the slice of the first stack to preview
        self._preview_reader = None
        self._new_labels: list[np.ndarray] | None = None  # set from another thread: see update_labels
        self.preview_every = 25
        self.preview_interval_s: float | None = None
        self._last_preview, self._preview_step = -math.inf, -1
        self._fast: tuple[int, torch.nn.Module] | None = None  # (step, inference copy)
        self._tiler = dataclasses.replace(
            Tiler.from_config(PREVIEW, self.device), precision=self.config.precision
        )
        self.history: list[dict] = []
        self.step = 0
        self.tries_record: dict | None = None  # set by BestOfTries on the run it keeps
        self.logit_bias: tuple[float, ...] = ()
        channels = data_mod.check_training_pairs(images, labels)
        if self.folder is not None and not run.resume and not run.overwrite:
            self.folder.check_new()
        self.start_note = ""  # init="auto": the starter chosen, or why none (for the fronts to show)
        if is_auto(run.init) and not run.resume:
            chosen = best_starter(images, labels, spec or ModelSpec(), self.config, class_names)
            self.start_note = chosen.note() if chosen is not None else NONE_APPLIES
            fits = chosen is not None and chosen.fits
            run = dataclasses.replace(run, init=chosen.path if fits else None)
        self.started_from = None if run.resume or run.init is None else str(run.init)
        base, resume_state = starting_point(run, self.folder)
        if base is not None and not run.resume and base.spec.in_channels != channels:
            raise UserInputError(
                f"the model to start from ({run.init}) takes {base.spec.in_channels} channel(s) but the "
                f"images have {channels}",
                ("check the image axes", "axes"),
                ("start from a model trained on such images, or from random weights", "init"),
            )
        self.config = fine_tuning_config(self.config, base, run.resume)
        seed = base.train_config.get("seed") if run.resume else None  # the run's own (kept by tries)
        if isinstance(seed, int) and seed != self.config.seed:
            self.config = self.config.replace(seed=seed)
        self.label_mode = base.label_mode if run.resume else self.config.label_mode
        warning = data_mod.label_mode_warning(labels, self.label_mode)
        self._label_shapes = [tuple(np.shape(stack)) for stack in labels]  # what update_labels must give
        self._objects = None  # objects: what turns their labels into the classes learnt
        if self.config.objects:
            self._objects = ObjectClasses(self.label_mode, (base.spec if base else spec or ModelSpec()).name)
            labels, class_names, warning = self._objects.first(labels, warning, self.config.patch_size)
        # large objects are learnt zoomed (object_scale.training_zoom): the images as their labels
        self.object_zoom = self._objects.zoom if self._objects else 1.0
        self._train_images = list(images)
        if self.object_zoom != 1.0:
            self._train_images = [zoomed_stack(stack, self.object_zoom) for stack in images]
        known = base.class_values if base and not self._objects else ()  # objects: always their 3 classes
        self.class_values = data_mod.find_class_values(labels, self.label_mode, known)
        self.warnings: tuple[str, ...] = (warning,) if warning else ()  # for the fronts to show
        base_names = dict(zip(base.class_values, base.class_names)) if base and base.class_names else {}
        self.class_names = name_classes(self.class_values, class_names, base_names)
        data_mod.check_training_sizes(self._train_images, self.config.patch_size)
        self.spec = (base.spec if base else spec or ModelSpec()).replace(
            in_channels=channels, num_classes=len(self.class_values)
        )
        if run.resume and self.spec.num_classes != base.spec.num_classes:
            raise UserInputError(
                "resume cannot add classes", ("fine-tune from its model file instead", "init")
            )
        self.normalization = self.spec.normalization
        rows = None if run.resume or base is None else head_rows(base, self.class_values, self.class_names)
        network = build_network(self.spec, self.config.seed, base, rows, self.device)
        self.model, self.memory_format = network
        check_3d(self.model, self.spec, images, self.config)
        volume = self.model.spatial_dims == 3
        self.dtype = resolve_precision(self.config.precision, self.device, training_3d=volume)
        # patches, flips: the run's own (each rank of a torchrun run its own, rank 0 the run's seed)
        self.generator = torch.Generator().manual_seed(rank_seed(self.config.seed))
        self._ddp = distributed_heads(self.model, self.device)  # several ranks: gradients averaged
        self._prepare_data(self._train_images, labels)
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(),
            lr=self.config.learning_rate,
            weight_decay=self.config.advanced.weight_decay,
        )
        steps = self.config.steps
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda s: lr_factor(s, steps))
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.dtype == torch.float16)
        if resume_state is not None:
            self._restore(resume_state)

    # -- set-up -----------------------------------------------------------------

    def _prepare_data(self, images, labels) -> None:
        """The training data of these labels (:func:`prepare_data`); nothing changes when
        it refuses them."""
        volumes = self.model.spatial_dims == 3
        data = prepare_data(
            images, labels, self.class_values, self.label_mode, self.normalization,
            self.config, volumes, self.device, self.generator,
        )  # fmt: skip
        self.sampler, self.val = data.sampler, data.val
        self.class_weights, self.priors = data.class_weights, data.priors

    def _restore(self, state: dict) -> None:
        try:
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            self.step = int(state["step"])
            if is_main():  # the other ranks of a torchrun run continue from their own seeds
                self.generator.set_state(state["sampler_rng"])
            else:
                self.generator.manual_seed(rank_seed(self.config.seed) + self.step)
            torch.set_rng_state(state["torch_rng"])
            self.history = list(state.get("history", []))
        except (KeyError, ValueError, RuntimeError) as exc:
            raise UserInputError(f"cannot resume: damaged resume.pt ({exc})") from exc
        if self.step >= self.config.steps:
            raise UserInputError(
                f"the run already has {self.step} of {self.config.steps} steps",
                ("ask for more steps", "steps"),
            )

    # -- control from another thread ---------------------------------------------

    def request_stop(self) -> None:
        """Ask the run to save and stop after the current step (thread-safe)."""
        self._stop_requested = True

    def discard(self) -> None:
        """Stop without saving or updating anything (a try that was not kept)."""
        self._discarded = self._stop_requested = True

    def set_preview(self, index: int | None) -> None:
        """Preview slice ``index`` of the first image stack (``None``: no preview; thread-safe).

        The slice is read and normalised in the training thread, exactly as prediction
        normalises it, so the preview of a model is what predicting that slice gives.
        The index comes back as the :class:`PreviewEvent`'s ``key``. Previews come every
        ``preview_every`` steps, or, when ``preview_interval_s`` is set, as soon as that
        many seconds have passed since the last one (the first after step 1).
        """
        self._preview = None if index is None else int(index)

    def update_labels(self, labels: Sequence[np.ndarray]) -> None:
        """Train on these label stacks from the next step on (thread-safe): strokes painted
        or erased while the run goes on join it, and the network keeps what it learned.

        The stacks must have the shapes of the ones the run started with. They are read
        in the training thread, at the next step, and not copied here: the caller's thread
        (the viewer's, say) does no work, and a live array is fine (a stroke painted while
        it is read joins fully at the next update). Values of classes the run does not
        know are ignored (a new class needs a new run: its network has no output for it).
        A :class:`LabelsEvent` reports the update.
        """
        self._new_labels = list(labels)

    def _preview_due(self) -> bool:
        if self._preview is None:
            return False
        if self.preview_interval_s is None:
            return self.step % self.preview_every == 0
        return time.perf_counter() - self._last_preview >= self.preview_interval_s

    def _make_preview(self) -> PreviewEvent:
        index = self._preview
        if self._preview_reader is None:
            recipe = self.normalization  # a 3D model's input is the volume: the stack's percentiles
            if self.model.spatial_dims == 3:
                recipe = dataclasses.replace(recipe, scope="stack")
            self._preview_reader = recipe.slice_reader(self._images[0])
        labels = self.predict_slice(self._preview_reader(index))
        self._last_preview, self._preview_step = time.perf_counter(), self.step
        return PreviewEvent(self.step, labels, index)

    def _take_new_labels(self) -> LabelsEvent:
        """Rebuild the training data from the labels :meth:`update_labels` left; the
        previous ones stay when nothing of the run's classes is painted any more."""
        labels, self._new_labels = self._new_labels, None
        if [tuple(np.shape(stack)) for stack in labels] != self._label_shapes:
            return LabelsEvent(self.step, accepted=False, reason="the labels changed shape")
        if self._objects is not None:
            try:
                labels = self._objects(labels)
            except UserInputError as exc:
                return LabelsEvent(self.step, accepted=False, reason=exc.problem)
        ignored = {0} if self.label_mode == "sparse" else set()
        found = set().union(*(np.unique(stack).tolist() for stack in labels))
        unknown = tuple(sorted(found - set(self.class_values) - ignored))
        try:
            self._prepare_data(self._train_images, labels)
        except UserInputError as exc:
            return LabelsEvent(self.step, unknown=unknown, accepted=False, reason=exc.problem)
        items = [*self.sampler.targets, *(y for _, y in self.val)]
        painted = sum(int((y >= 0).sum()) for y in items)
        return LabelsEvent(self.step, painted, len(items), unknown)

    # -- the loop -----------------------------------------------------------------

    def run(self) -> Generator[StartEvent | StepEvent | EpochEvent | PreviewEvent, None, TrainResult]:
        """Train to ``config.steps``, yielding an event after every step."""
        cfg = self.config
        if self.folder is not None:
            self.folder.write_record(self._config_record())
        if self.start_note and self.step == 0:
            yield StartEvent(self.start_note)
        start = time.perf_counter()
        epoch_losses: list[float] = []
        saved_at, every = -1, cfg.epoch_steps()
        try:
            while self.step < cfg.steps and not self._stop_requested:
                if self._new_labels is not None:
                    yield self._take_new_labels()
                self.model.train()
                loss = self._train_step()
                self.step += 1
                epoch_losses.append(loss)
                lr = self.optimizer.param_groups[0]["lr"]
                elapsed = time.perf_counter() - start
                yield StepEvent(self.step, cfg.steps, loss, lr, elapsed, remaining=cfg.steps - self.step)
                if self.step % every == 0 or self.step == cfg.steps:
                    yield self._end_epoch(epoch_losses, time.perf_counter() - start)
                    epoch_losses, saved_at = [], self.step
                if self._preview_due():
                    yield self._make_preview()
        except GeneratorExit:
            self._stop_requested = True
            if saved_at != self.step and not self._discarded:
                self._update_prior()
                self._save()
            raise
        if saved_at != self.step:
            self._end_epoch(epoch_losses, time.perf_counter() - start)
        if self._preview is not None and self._preview_step != self.step:
            yield self._make_preview()  # the last preview shows the model as it is saved
        return TrainResult(self.loaded(), self.run_dir, stopped=self.step < cfg.steps)

    def _train_step(self) -> float:
        """One optimisation step; on out-of-memory, retry with half the batch (and say so)."""
        while True:
            try:
                return self._optimise(self.batch_size)
            except torch.OutOfMemoryError:
                self.optimizer.zero_grad(set_to_none=True)
                self.batch_size = smaller_batch(self.batch_size, self.device, "batch size", "patch_size")

    def _optimise(self, batch_size: int) -> float:
        advanced = self.config.advanced
        x, y = self.sampler.sample(batch_size)
        if advanced.augment:
            x, y = augment(x, y, self.generator, advanced.deform, advanced.zoom)
        turn, grid, weight = 0, None, self.config.consistency_weight()
        if weight:  # a second, turned, zoomed and jittered view of the batch
            turn, grid, second = second_view(x, advanced.consistency_zoom, self.generator)
            x = torch.cat([x, second])
        if self.device.type == "cpu":
            x = x.contiguous(memory_format=self.memory_format)
        with autocast(self.device, self.dtype):
            heads = self._ddp(x) if self._ddp is not None else self.model.forward_heads(x)
        # the consistency term ramps up over the first quarter: the early network is no teacher yet
        ramp = min(1.0, (self.step + 1) / max(1.0, 0.25 * self.config.steps))
        loss = training_loss(heads, x, y, self.class_weights, advanced, ramp * weight, turn, grid)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.scaler.is_enabled() or self._finite_gradients():  # fp16's scaler skips such steps itself
            self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        return mean_over_ranks(float(loss.detach()))

    def _finite_gradients(self) -> bool:
        """Whether this step's gradients are finite; if not, the step is skipped (one NaN
        would turn every weight NaN, and such a network predicts nothing), and a run whose
        last :data:`MAX_BAD_STEPS` steps all were is refused."""
        total = torch.nn.utils.clip_grad_norm_(self.model.parameters(), float("inf"))
        if bool(torch.isfinite(total)):
            self.bad_steps = 0
            return True
        self.optimizer.zero_grad(set_to_none=True)
        self.bad_steps += 1
        if self.bad_steps >= MAX_BAD_STEPS:
            raise UserInputError(
                f"training diverged: {self.bad_steps} steps in a row gave NaN or infinite gradients",
                ("lower the learning rate", "learning_rate"),
            )
        return False

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

    # -- predicting with the model being trained ------------------------------------

    def _update_prior(self) -> None:
        """Re-estimate the class-prior correction on the unpainted training pixels."""
        if self.priors is not None:
            self.logit_bias = self.priors.estimate(self._probabilities)

    def validate(self) -> dict[str, float]:
        """Dice per class on the labelled pixels of the held-out slices."""
        pairs = [(np.where(y >= 0, self._predict_index(x), -1), y) for x, y in self.val]
        dice = masked_dice(pairs, len(self.class_values))
        out = {f"val_dice_{v}": float(d) for v, d in zip(self.class_values, dice)}
        out["val_dice_mean"] = float(np.nanmean(dice))
        return out

    def _probabilities(self, image: np.ndarray) -> np.ndarray:
        """Class probabilities ``(K, Y, X)`` of a normalised slice, no prior correction."""
        return torch.softmax(torch.from_numpy(self._scores(image)), 0).numpy()

    def _predict_index(self, image: np.ndarray) -> np.ndarray:
        """Class indices of a normalised ``(C, Y, X)`` slice, prior correction included."""
        return self._corrected_scores(image).argmax(0)

    def _corrected_scores(self, image: np.ndarray) -> np.ndarray:
        """:meth:`_scores` with the class-prior correction, if the run has one."""
        scores = self._scores(image)
        if self.logit_bias:
            scores = scores + np.asarray(self.logit_bias, scores.dtype)[:, None, None]
        return scores

    def _scores(self, image: np.ndarray) -> np.ndarray:
        """Network scores ``(K, Y, X)`` of a normalised ``(C, Y, X)`` slice (a 3D model sees
        it as a one-slice volume: a rough preview), from one inference copy per step."""
        if self._fast is None or self._fast[0] != self.step:
            self._fast = (self.step, inference_copy(self.model, self.device))
        volume = self.model.spatial_dims == 3
        scores = self._tiler(self._fast[1], image[:, None] if volume else image)
        return scores[:, 0] if volume else scores

    def predict_slice(self, image: np.ndarray) -> np.ndarray:
        """Labels (annotation numbering) of a normalised ``(C, Y, X)`` slice as it is (a run
        that learns zoomed, :attr:`object_zoom`, predicts it zoomed, its scores zoomed back)."""
        lut = np.asarray(self.class_values, dtype=labels_dtype(self.class_values))
        if self.object_zoom == 1.0:
            return lut[self._predict_index(image)]
        scores = self._corrected_scores(zoomed(image, self.object_zoom))
        return lut[zoomed_back(scores, image.shape[-2:]).argmax(0)]

    # -- output -------------------------------------------------------------------

    @property
    def run_dir(self) -> Path | None:
        return self.folder.path if self.folder is not None else None

    def loaded(self) -> LoadedModel:
        """The current model with its recipe (shares the network, in eval mode)."""
        return LoadedModel(
            model=self.model.eval(),
            spec=self.spec,
            class_values=self.class_values,
            label_mode=self.label_mode,
            train_config=self.config.to_dict(),
            history=list(self.history),
            step=self.step,
            logit_bias=self.logit_bias,
            class_names=self.class_names,
            object_size=self._objects.object_size if self._objects else 0.0,
            object_depths=self._objects.object_depths if self._objects else (),
            object_zoom=self.object_zoom,
        )

    def _config_record(self) -> dict:
        record = {
            "model": self.spec.to_dict(),
            "train": self.config.to_dict(),
            "class_values": list(self.class_values),
            "class_names": list(self.class_names),
            "label_mode": self.label_mode,
            "started_from": self.started_from,
        }
        if self.tries_record is not None:
            record["tries"] = self.tries_record
        return record

    def adopt_run_dir(self, run_dir: str | Path) -> Path | None:
        """Save this run (config, model, resume state, history) in ``run_dir`` now and at
        every later save (a run that started in memory, such as a try of :class:`BestOfTries`)."""
        self.folder = RunFolder(run_dir)
        self.folder.write_record(self._config_record())
        return self._save()

    def _save(self) -> Path | None:
        if self.folder is None:
            return None
        state = {
            "step": self.step,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "sampler_rng": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "history": self.history,
        }
        return self.folder.save(self.loaded(), state)


def make_trainer(
    images: Sequence[np.ndarray],
    labels: Sequence[np.ndarray],
    spec: ModelSpec | None = None,
    config: TrainConfig | None = None,
    run: RunOptions | None = None,
    class_names: Sequence[str] | Mapping[int, str] | None = None,
) -> Trainer | BestOfTries:
    """A :class:`BestOfTries` when ``config.tries > 1`` on a new run, else a :class:`Trainer`
    (a resumed run goes on with the seed that was kept)."""
    config, run = config or TrainConfig(), run or RunOptions()
    if config.tries > 1 and not run.resume:
        start = RunOptions(init=run.init)

        def build(k: int) -> Trainer:
            nonlocal start
            trainer = Trainer(
                images, labels, spec, config.replace(seed=config.seed + k, tries=1), start, class_names
            )
            start = RunOptions(init=trainer.started_from)  # init="auto": judged by the first try only
            return trainer

        return BestOfTries(build, config, run.run_dir, run.overwrite)
    return Trainer(images, labels, spec, config, run, class_names)


def train(*args, on_event=None, **kwargs) -> TrainResult:
    """Build a trainer (:func:`make_trainer`) and run it to the end; ``on_event`` sees every event."""
    return run_generator(make_trainer(*args, **kwargs).run(), on_event)

"""Prediction on dask.distributed: the blocks of :mod:`~napari_unetseg.core.blocks` as tasks.

``unetseg predict --dask local:N`` starts a ``LocalCluster`` of N worker processes;
``--dask tcp://HOST:PORT`` uses a running scheduler (e.g. one that dask-jobqueue started
on SLURM, docs/cluster.md). For each input the client

1. opens it lazily and plans its blocks (a few tiles on a side, one output chunk each),
2. creates the outputs (an unfinished ``.<name>.part`` beside each) and a
   :class:`~napari_unetseg.core.blocks.BlockLedger`, which says what an earlier,
   interrupted run of the same command finished already,
3. sends the model once to every worker (``scatter(broadcast=True)``), one statistics
   task per slice (the normalisation values, computed once) and one task per missing
   block; a block task reads its region (and its tiles' context) from the input, predicts
   it and writes it straight into the outputs, then records itself in the ledger,
4. for a model trained on objects (its objects, or its class mask with the size match
   on): the blocks write classes to a scratch array; one task
   per slice (per volume, for 3D models and for a 2D model's z-stack joined in 3D,
   ``objects_3d``) predicts the slice again, zoomed, where its objects lie outside the
   sizes a 2D model learnt (the size match, ``PredictConfig.match_size``) and finds its
   objects as one process does (or, for the class mask, writes its classes), and, once
   their counts give each slice its first id, one task per block writes the ids numbered
   over the stack (so the ids are the single process's, across block borders too),
5. renames each output into place when all its work is finished.

A worker that dies loses nothing: the scheduler runs its tasks again elsewhere (every
task writes whole chunks of its own, so running it twice is harmless). Ctrl-C keeps the
finished work; the same command again does only the rest. Workers must see the inputs
and outputs under the same paths (one machine, or a shared file system).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np

from napari_unetseg.core import block_tasks
from napari_unetseg.core.blocks import BlockLedger, ScratchStack, SliceStage, fingerprint, plan_blocks
from napari_unetseg.core.checkpoint import LoadedModel
from napari_unetseg.core.config import PredictConfig
from napari_unetseg.core.errors import UserInputError
from napari_unetseg.core.events import BlockProgress, FileEvent
from napari_unetseg.core.io import to_stack
from napari_unetseg.core.object_scale import SizeMatch
from napari_unetseg.core.object_sink import check_z_stack, is_object_model, object_recipe
from napari_unetseg.core.objects import MAX_ID
from napari_unetseg.core.outputs import Target, open_input, open_writers
from napari_unetseg.core.prediction import is_volume_model

_LOCAL = re.compile(r"^local:(\d+)$")
CONNECT_TIMEOUT_S = 5


@contextlib.contextmanager
def connect(address: str) -> Iterator:
    """A ``distributed.Client`` for ``local:N`` (a new ``LocalCluster`` of N single-threaded
    worker processes, closed on exit) or a running scheduler's address (``tcp://HOST:PORT``)."""
    try:
        from distributed import Client, LocalCluster
    except ImportError as exc:
        raise UserInputError(
            "needs dask.distributed, which is not installed: pip install 'napari-unetseg[cluster]'",
            subject="dask",
        ) from exc
    local = _LOCAL.match(address)
    if local:
        workers = int(local.group(1))
        if workers < 1:
            raise UserInputError(f"local:{workers} starts no worker: use local:1 or more", subject="dask")
        with (
            LocalCluster(
                n_workers=workers,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
                silence_logs=logging.ERROR,
            ) as cluster,
            Client(cluster) as client,
        ):
            yield client
        return
    if "://" not in address:
        raise UserInputError(
            f"{address!r} is neither local:N nor a scheduler address",
            ("give local:4 for 4 worker processes here, or an address such as tcp://host:8786", "dask"),
        )
    try:
        client = Client(address, timeout=CONNECT_TIMEOUT_S)
    except (OSError, TimeoutError, ValueError) as exc:
        raise UserInputError(
            f"cannot reach a dask scheduler at {address} within {CONNECT_TIMEOUT_S} s",
            ("check the address, or start a scheduler (docs/cluster.md)", "dask"),
        ) from exc
    with client:
        yield client


def local_threads(address: str) -> int | None:
    """Torch threads per worker of a ``local:N`` cluster (this machine's cores shared out);
    ``None`` leaves a remote cluster's workers as their launcher set them."""
    local = _LOCAL.match(address)
    return max(1, (os.cpu_count() or 1) // int(local.group(1))) if local else None


def predict_with_dask(
    client,
    models: Sequence[LoadedModel],
    model_files: Sequence[Path],
    targets: Sequence[Target],
    axes: str | None,
    config: PredictConfig,
    probabilities: bool,
    overwrite: bool = False,
    on_event: Callable | None = None,
    threads: int | None = None,
    objects: bool = False,
    objects_3d: bool = False,
) -> list[Path]:
    """Predict every target's input block by block on ``client``'s workers (``objects``:
    write the object ids of a model trained on objects); returns the outputs written. See
    the module docstring for the steps."""
    models_future = client.scatter([m.to_payload() for m in models], broadcast=True, hash=False)
    token = _token(model_files, config, probabilities)
    runs = []
    for index, target in enumerate(targets):
        if on_event:
            on_event(FileEvent(index, len(targets), target.source))
        runs.append(_InputRun(target, axes, models, model_files, config, probabilities, objects, objects_3d))
    progress = _Progress(sum(run.work for run in runs), sum(run.work_done for run in runs), on_event)
    submit = client.submit
    futures = []
    for run in runs:
        needed = {b.job for b in run.todo} | (set(run.jobs_left()) if run.matched else set())
        run.stats = {
            job: submit(block_tasks.statistics_task, models_future, token, run.source, job, pure=False)
            for job in sorted(needed)
        }
        futures += [
            submit(block_tasks.block_task, models_future, token, config, probabilities, run.source,
                   run.stats[b.job], b, run.stage_one, run.ledger, threads, pure=False)
            for b in run.todo
        ]  # fmt: skip
    _wait(client, futures, progress)
    futures = [
        submit(block_tasks.slice_task, models_future, token, config, probabilities, run.source,
               run.stats.get(job) if run.matched else None, run.stage, job, threads, pure=False)
        for run in runs
        if run.stage is not None
        for job in run.jobs_left()
    ]  # fmt: skip
    _wait(client, futures, progress)
    object_runs = [run for run in runs if run.objects]
    futures = [
        submit(block_tasks.ids_task, run.local, offset, b, {"labels_out": run.writers["labels_out"]},
               run.ledger, pure=False)
        for run in object_runs
        for b, offset in run.ids_left()
    ]  # fmt: skip
    _wait(client, futures, progress)
    return [path for run in runs for path in run.commit(overwrite)]


class _Progress:
    """Finished pieces of work, reported as :class:`BlockProgress` events."""

    def __init__(self, total: int, resumed: int, on_event) -> None:
        self.total, self.resumed, self.done, self.on_event = total, resumed, resumed, on_event
        if on_event:
            on_event(BlockProgress(resumed, total, resumed))

    def finished(self, seconds: float, peak: int, worker: int) -> None:
        self.done += 1
        if self.on_event:
            self.on_event(BlockProgress(self.done, self.total, self.resumed, seconds, peak, worker))


def _wait(client, futures: list, progress: _Progress) -> None:
    """Wait for every task (progress as each finishes); on an error or Ctrl-C cancel the
    others, whose finished work stays recorded for the next run."""
    from distributed import as_completed

    try:
        for future in as_completed(futures):
            _, seconds, peak, worker, *events = future.result()  # a task's error is raised here
            progress.finished(seconds, peak, worker)
            for event in events:  # a slice predicted again (ZoomEvent), from the second stage
                if event is not None and progress.on_event:
                    progress.on_event(event)
    except BaseException:
        client.cancel(futures)
        raise


class _InputRun:
    """One input of a block-wise run: its blocks, outputs, ledger and what is left to do."""

    def __init__(
        self, target: Target, axes, models, model_files, config, probabilities, objects, objects_3d=False
    ) -> None:
        from napari_unetseg.core.class_names import labels_dtype
        from napari_unetseg.core.prediction import _check_input

        image, found, zarr_image = open_input(target.source, axes)
        stack, layout = to_stack(image, found)
        _check_input(list(models), stack, None)
        self.source = (Path(target.source), found)
        self.volume, self.objects = is_volume_model(models[0]), objects and is_object_model(models[0])
        self.joined = self.objects and objects_3d and not self.volume  # a 2D model's slices, in 3D
        if objects_3d:
            check_z_stack(layout.axes, Path(target.source).name)
        # a 2D object model's slices at the scale it learnt, as one process predicts them
        self.matched = not self.joined and SizeMatch.of(list(models), config) is not None
        # a model that learnt its objects zoomed predicts whole slices, zoomed: one block each
        side = config.block_size if models[0].object_zoom == 1.0 else max(stack.shape[2:])
        self.blocks = plan_blocks(stack.shape, self.volume, side, config.block_depth)
        values = models[0].class_values
        classes_dtype = labels_dtype(values)
        names = (
            {v: models[0].name_of(v) for v in values} if models[0].class_names and not self.objects else {}
        )
        dtype = np.dtype(np.uint32) if self.objects else classes_dtype
        self.writers = open_writers(
            target, layout, dtype, len(values), names, zarr_image, part_of=_part, chunk=config.block_size
        )
        self.ledger = BlockLedger(target.labels)
        settings = {
            "config": config.to_dict(),
            "probabilities": probabilities,
            "objects": self.objects,
            "objects_3d": self.joined,
            "outputs": [str(w.path) for w in self.writers.values()],
        }
        planes = (len(stack), *stack.shape[2:])
        self.classes = ScratchStack(
            self.ledger.folder / "classes.zarr", planes, classes_dtype, config.block_size
        )
        self.local = ScratchStack(self.ledger.folder / "objects.zarr", planes, np.uint32, config.block_size)
        staged = self.objects or self.matched  # the blocks' classes go to the scratch for a second stage
        scratch = [self.classes, self.local] if staged else []
        self.stage = None
        if staged:
            recipe = object_recipe(models[0]) if self.objects else None  # None: the class mask
            volume = self.volume or self.joined  # one job: the whole stack
            self.stage = SliceStage(
                self.classes, self.local, volume, recipe, self.matched, self.writers, self.ledger
            )
        self.stats: dict = {}  # job -> its statistics (a future), once submitted
        same = self.ledger.start(fingerprint(model_files, target.source, stack.shape, settings))
        if not (same and all(w.part_exists() for w in [*self.writers.values(), *scratch])):
            self.ledger.clear()  # nothing (or not all) of an earlier run is left: start afresh
            self.ledger.start(fingerprint(model_files, target.source, stack.shape, settings))
            for writer in [*self.writers.values(), *scratch]:
                writer.create()
        self.stage_one = {**self.writers, "labels_out": self.classes} if staged else self.writers
        predicted = self.ledger.finished("b")
        self.todo = [b for b in self.blocks if b.number not in predicted]
        self.jobs = sorted({b.job for b in self.blocks})
        self.object_jobs = [0] if self.joined else self.jobs  # the joined stack is one job of objects
        self.work = len(self.blocks) + (len(self.object_jobs) if staged else 0)
        self.work += len(self.blocks) if self.objects else 0
        self.work_done = len(predicted) + len(self.ledger.finished("o")) + len(self.ledger.finished("i"))

    def jobs_left(self) -> list[int]:
        """The jobs whose second stage (:attr:`stage`: size match, objects) is still to run
        (after every block is predicted)."""
        found = self.ledger.finished("o")
        return [job for job in self.object_jobs if job not in found]

    def ids_left(self) -> list[tuple]:
        """The blocks whose ids are still to write, each with the first id of its job minus one."""
        counts = {job: int(note) for job, note in self.ledger.finished("o").items()}
        if self.joined:  # one numbering for the whole stack, from its one job of objects
            offsets = dict.fromkeys(self.jobs, 0)
        else:
            offsets = dict(zip(self.jobs, np.cumsum([0] + [counts[j] for j in self.jobs])[:-1].tolist()))
        if sum(counts.values()) > MAX_ID:
            raise UserInputError(f"more than {MAX_ID} objects: predict fewer slices at a time")
        written = self.ledger.finished("i")
        return [(b, offsets[b.job]) for b in self.blocks if b.number not in written]

    def commit(self, overwrite: bool) -> list[Path]:
        written = []
        for writer in self.writers.values():
            writer.attach()
            written.append(writer.commit(overwrite))
        self.ledger.clear()
        return written


def _part(path: Path) -> Path:
    """The unfinished output's fixed name (``.<name>.part`` beside it), which a rerun finds."""
    return path.parent / f".{path.name}.part"


def _token(model_files: Sequence[Path], config: PredictConfig, probabilities: bool) -> str:
    """A name for one run's predictor in the workers' cache."""
    digest = hashlib.sha256()
    for path in model_files:
        digest.update(str(Path(path).resolve()).encode())
        digest.update(str(Path(path).stat().st_mtime_ns).encode())
    digest.update(repr((config.to_dict(), probabilities, time.time_ns())).encode())
    return digest.hexdigest()

"""Prediction on dask.distributed: the blocks of :mod:`~napari_unetseg.core.blocks` as tasks.

``unetseg predict --dask local:N`` starts a ``LocalCluster`` of N worker processes;
``--dask tcp://HOST:PORT`` uses a running scheduler (e.g. one that dask-jobqueue started
on SLURM, docs/cluster.md). For each input the client

1. opens it lazily and plans its blocks (a few tiles on a side, one output chunk each),
2. creates the outputs (an unfinished ``.<name>.part`` beside each) and a
   :class:`~napari_unetseg.core.blocks.BlockLedger`, which says which blocks an earlier,
   interrupted run of the same command finished already,
3. sends the model once to every worker (``scatter(broadcast=True)``), one statistics
   task per slice (the normalisation values, computed once) and one task per missing
   block; a block task reads its region (and its tiles' context) from the input, predicts
   it and writes it straight into the outputs, then records itself in the ledger,
4. renames each output into place when all its blocks are finished.

A worker that dies loses nothing: the scheduler runs its tasks again elsewhere (a block
writes whole chunks, so writing it twice is harmless). Ctrl-C keeps the finished blocks;
the same command again predicts only the others. Workers must see the inputs and
outputs under the same paths (one machine, or a shared file system).
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

from napari_unetseg.core.blocks import (
    Block,
    BlockLedger,
    fingerprint,
    job_statistics,
    plan_blocks,
    predict_block,
    write_block,
)
from napari_unetseg.core.checkpoint import LoadedModel, model_from_payload
from napari_unetseg.core.config import PredictConfig
from napari_unetseg.core.errors import UserInputError
from napari_unetseg.core.events import BlockProgress, FileEvent
from napari_unetseg.core.io import to_stack
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
) -> list[Path]:
    """Predict every target's input block by block on ``client``'s workers; returns the
    outputs written. See the module docstring for the steps."""
    payloads = [m.to_payload() for m in models]
    token = _token(model_files, config, probabilities)
    models_future = client.scatter(payloads, broadcast=True, hash=False)
    runs, futures = [], {}
    for index, target in enumerate(targets):
        if on_event:
            on_event(FileEvent(index, len(targets), target.source))
        run = _InputRun(target, axes, models, model_files, config, probabilities)
        runs.append(run)
        stats = {
            job: client.submit(_statistics_task, models_future, token, run.source, job, pure=False)
            for job in run.jobs
        }
        for block in run.todo:
            future = client.submit(
                _block_task,
                models_future,
                token,
                config,
                probabilities,
                run.source,
                stats[block.job],
                block,
                run.writers,
                run.ledger.folder,
                threads,
                pure=False,
            )
            futures[future] = run
    return _gather(client, runs, futures, overwrite, on_event)


def _gather(client, runs: list, futures: dict, overwrite: bool, on_event) -> list[Path]:
    """Wait for the blocks (progress as they finish), commit each input's outputs when its
    last block is in; on an error or Ctrl-C cancel the rest and keep the finished blocks."""
    from distributed import as_completed

    total = sum(run.total for run in runs)
    resumed = sum(run.total - len(run.todo) for run in runs)
    done = resumed
    written = []
    if on_event:
        on_event(BlockProgress(done, total, resumed))
    try:
        for run in runs:
            if not run.todo:
                written += run.commit(overwrite)
        for future in as_completed(list(futures)):
            _, seconds, peak, worker = future.result()  # a task's error is raised here
            done += 1
            run = futures[future]
            run.finished += 1
            if on_event:
                on_event(BlockProgress(done, total, resumed, seconds, peak, worker))
            if run.finished == len(run.todo):
                written += run.commit(overwrite)
    except BaseException:
        client.cancel(list(futures))
        raise
    return written


class _InputRun:
    """One input of a block-wise run: its blocks, outputs, ledger and what is left to do."""

    def __init__(self, target: Target, axes, models, model_files, config, probabilities) -> None:
        from napari_unetseg.core.class_names import labels_dtype
        from napari_unetseg.core.prediction import _check_input

        image, found, zarr_image = open_input(target.source, axes)
        stack, layout = to_stack(image, found)
        _check_input(list(models), stack, None)
        self.source = (Path(target.source), found)
        volume = is_volume_model(models[0])
        blocks = plan_blocks(stack.shape, volume, config.block_size, config.block_depth)
        self.total, self.finished = len(blocks), 0
        values = models[0].class_values
        names = {value: models[0].name_of(value) for value in values} if models[0].class_names else {}
        self.writers = open_writers(
            target,
            layout,
            labels_dtype(values),
            len(values),
            names,
            zarr_image,
            part_of=_part,
            chunk=config.block_size,
        )
        self.ledger = BlockLedger(target.labels)
        settings = {
            "config": config.to_dict(),
            "probabilities": probabilities,
            "outputs": [str(w.path) for w in self.writers.values()],
        }
        finished = self.ledger.start(fingerprint(model_files, target.source, stack.shape, settings))
        if finished and all(w.part_exists() for w in self.writers.values()):
            for writer in self.writers.values():
                writer.attach()
        else:
            if finished:  # the ledger outlived its outputs: start again
                self.ledger.clear()
                self.ledger.start(fingerprint(model_files, target.source, stack.shape, settings))
            finished = set()
            for writer in self.writers.values():
                writer.create()
        self.todo = [b for b in blocks if b.number not in finished]
        self.jobs = sorted({b.job for b in self.todo}) if self.todo else []

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


# --- what runs on the workers --------------------------------------------------------------
_CACHE: dict = {}  # per worker process: the current run's models and predictor, opened inputs


def _models(payloads: list[dict], token: str) -> list[LoadedModel]:
    key = ("models", token)
    if key not in _CACHE:
        _CACHE.clear()  # one run at a time per worker: drop the last run's models and inputs
        _CACHE[key] = [model_from_payload(p, f"model {i + 1}") for i, p in enumerate(payloads)]
    return _CACHE[key]


def _stack(source: tuple[Path, str]):
    key = ("input", source)
    if key not in _CACHE:
        image, found, _ = open_input(*source)
        _CACHE[key] = to_stack(image, found)[0]
    return _CACHE[key]


def _statistics_task(payloads: list[dict], token: str, source: tuple[Path, str], job: int):
    import dask

    with dask.config.set(scheduler="synchronous"):  # read the input in this task's thread
        return job_statistics(_models(payloads, token), _stack(source), job)


def _block_task(
    payloads, token, config, probabilities, source, stats, block: Block, writers, ledger_folder, threads
) -> tuple[int, float, int, int]:
    """Predict one block, write it, record it; returns the block number, the seconds it took,
    the worker process's peak memory (RSS, bytes) and its process id."""
    import resource

    import dask
    import torch

    from napari_unetseg.core.device import resolve_device
    from napari_unetseg.core.prediction import RegionPredictor
    from napari_unetseg.core.tiler import Tiler

    start = time.perf_counter()
    if threads is not None and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    key = ("predictor", token)
    if key not in _CACHE:
        models = _models(payloads, token)
        tiler = Tiler.from_config(config, resolve_device(config.device))
        _CACHE[key] = RegionPredictor(models, tiler, softmax=probabilities)
    with dask.config.set(scheduler="synchronous"):
        labels, scores = predict_block(_CACHE[key], _stack(source), stats, block)
    for name, writer in writers.items():
        cached = _CACHE.setdefault(("writer", name, str(writer.path)), writer)
        cached.attach()
        writers = {**writers, name: cached}
    write_block(writers, block, labels, scores if probabilities else None)
    (Path(ledger_folder) / str(block.number)).touch()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return block.number, time.perf_counter() - start, peak, os.getpid()

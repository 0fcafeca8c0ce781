"""What the dask workers run for :mod:`~napari_unetseg.core.distributed`: small functions
of picklable arguments, each doing one piece of work and recording it in the ledger.

A worker process keeps the current run's models, predictor, opened input and writers in
:data:`_CACHE` (a new run, known by its token, empties it), so the model sent once with
``scatter(broadcast=True)`` is turned into a network once per worker.
"""

from __future__ import annotations

import os
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from napari_unetseg.core.blocks import (
    Block,
    BlockLedger,
    ScratchStack,
    SliceStage,
    job_statistics,
    predict_block,
    size_matched,
    write_block,
)
from napari_unetseg.core.checkpoint import LoadedModel, model_from_payload
from napari_unetseg.core.events import ZoomEvent
from napari_unetseg.core.io import to_stack
from napari_unetseg.core.outputs import open_input

_CACHE: dict = {}  # per worker process: the current run's models and predictor, opened inputs, writers


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


def _attached(writers: dict) -> dict:
    """The worker's open copy of each writer (opened once per run)."""
    opened = {}
    for name, writer in writers.items():
        cached = _CACHE.setdefault(("writer", name, str(writer.path)), writer)
        cached.attach()
        opened[name] = cached
    return opened


def statistics_task(payloads: list[dict], token: str, source: tuple[Path, str], job: int):
    """The normalisation values of one job (:func:`~napari_unetseg.core.blocks.job_statistics`)."""
    import dask

    with dask.config.set(scheduler="synchronous"):  # read the input in this task's thread
        return job_statistics(_models(payloads, token), _stack(source), job)


def _predictor(payloads: list[dict], token: str, config, probabilities: bool):
    """The worker's predictor of the current run (made once per run)."""
    from napari_unetseg.core.device import resolve_device
    from napari_unetseg.core.prediction import RegionPredictor
    from napari_unetseg.core.tiler import Tiler

    key = ("predictor", token)
    if key not in _CACHE:
        tiler = Tiler.from_config(config, resolve_device(config.device))
        _CACHE[key] = RegionPredictor(_models(payloads, token), tiler, softmax=probabilities)
    return _CACHE[key]


def _threads(threads: int | None) -> None:
    import torch

    if threads is not None and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def block_task(
    payloads, token, config, probabilities, source, stats, block: Block, writers, ledger: BlockLedger, threads
) -> tuple[int, float, int, int]:
    """Predict one block, write it, record it; returns the block number, the seconds it took,
    the worker process's peak memory (bytes) and its process id."""
    import dask

    start = time.perf_counter()
    _threads(threads)
    predictor = _predictor(payloads, token, config, probabilities)
    with dask.config.set(scheduler="synchronous"):
        labels, scores = predict_block(predictor, _stack(source), stats, block)
    write_block(_attached(writers), block, labels, scores if probabilities else None)
    ledger.mark(block.number)
    return block.number, time.perf_counter() - start, peak_memory(), os.getpid()


def slice_task(
    payloads, token, config, probabilities, source, stats, stage: SliceStage, job: int, threads
) -> tuple[int, float, int, int, ZoomEvent | None]:
    """One job's second stage (:class:`~napari_unetseg.core.blocks.SliceStage`): its
    predicted classes (a slice, or the volume) size-matched, then its objects numbered
    1..n in ``stage.local`` (n recorded in the ledger) or its classes written out. Returns
    what :func:`block_task` does and the slice's
    :class:`~napari_unetseg.core.events.ZoomEvent`, if it was predicted again."""
    import dask

    from napari_unetseg.core.instances import objects_of_classes
    from napari_unetseg.core.object_scale import SizeMatch

    start = time.perf_counter()
    classes = stage.classes.read(slice(None) if stage.volume else job)
    objects = event = None
    if stage.match_size:
        _threads(threads)
        match = SizeMatch(_models(payloads, token)[0])
        predictor = _predictor(payloads, token, config, probabilities)
        with dask.config.set(scheduler="synchronous"):
            classes, scores, event = size_matched(predictor, match, _stack(source), stats, job, classes)
        objects = match.objects  # the objects it measured, when the slice was not zoomed
        writers = _attached(stage.writers)
        if scores is not None and "probabilities_out" in writers:
            writers["probabilities_out"].write(job, scores)
        event = replace(event, file=source[0].name) if event else None
    if stage.recipe is None:  # an object model's class mask
        _attached(stage.writers)["labels_out"].write(job, classes)
        stage.ledger.mark(job, "o", "0")
        return job, time.perf_counter() - start, peak_memory(), os.getpid(), event
    objects = objects_of_classes(classes, *stage.recipe) if objects is None else objects
    if stage.volume:
        for z, plane in enumerate(objects):
            stage.local.write(z, plane)
    else:
        stage.local.write(job, objects)
    stage.ledger.mark(job, "o", str(int(objects.max())))
    return job, time.perf_counter() - start, peak_memory(), os.getpid(), event


def ids_task(
    local: ScratchStack, offset: int, block: Block, writers: dict, ledger
) -> tuple[int, float, int, int]:
    """One block of object ids numbered over the stack: its job's objects, ``offset`` on."""
    start = time.perf_counter()
    planes = block.region[-2:]
    index = (block.region[0], *planes) if len(block.region) == 3 else (block.job, *planes)
    objects = local.read(index)
    ids = np.where(objects > 0, objects + np.uint32(offset), 0).astype(np.uint32)
    write_block(_attached(writers), block, ids, None)
    ledger.mark(block.number, "i")
    return block.number, time.perf_counter() - start, peak_memory(), os.getpid()


def peak_memory() -> int:
    """This process's peak resident memory in bytes: Linux's VmHWM (ru_maxrss would also
    count what the parent held when it started this process), else ru_maxrss."""
    import resource

    try:
        with open("/proc/self/status", encoding="ascii") as status:
            line = next(line for line in status if line.startswith("VmHWM:"))
        return int(line.split()[1]) * 1024
    except (OSError, StopIteration, ValueError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

"""What the dask workers run for :mod:`~napari_unetseg.core.distributed`: small functions
of picklable arguments, each doing one piece of work and recording it in the ledger.

A worker process keeps the current run's models, predictor, opened input and writers in
:data:`_CACHE` (a new run, known by its token, empties it), so the model sent once with
``scatter(broadcast=True)`` is turned into a network once per worker.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from napari_unetseg.core.blocks import (
    Block,
    BlockLedger,
    ScratchStack,
    job_statistics,
    predict_block,
    write_block,
)
from napari_unetseg.core.checkpoint import LoadedModel, model_from_payload
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


def block_task(
    payloads, token, config, probabilities, source, stats, block: Block, writers, ledger: BlockLedger, threads
) -> tuple[int, float, int, int]:
    """Predict one block, write it, record it; returns the block number, the seconds it took,
    the worker process's peak memory (bytes) and its process id."""
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
    write_block(_attached(writers), block, labels, scores if probabilities else None)
    ledger.mark(block.number)
    return block.number, time.perf_counter() - start, peak_memory(), os.getpid()


def objects_task(
    classes: ScratchStack, local: ScratchStack, job: int, volume: bool, values: tuple[int, int, int], ledger
) -> tuple[int, float, int, int]:
    """The objects of one job's predicted classes (a slice, or a 3D model's volume),
    numbered 1..n in ``local``; records n in the ledger. ``values``: the model's
    :func:`~napari_unetseg.core.object_sink.object_recipe`."""
    from napari_unetseg.core.instances import objects_of_classes

    start = time.perf_counter()
    index = slice(None) if volume else job
    objects = objects_of_classes(classes.read(index), *values)
    if volume:
        for z, plane in enumerate(objects):
            local.write(z, plane)
    else:
        local.write(job, objects)
    ledger.mark(job, "o", str(int(objects.max())))
    return job, time.perf_counter() - start, peak_memory(), os.getpid()


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

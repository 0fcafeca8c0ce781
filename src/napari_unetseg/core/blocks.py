"""Block-wise prediction: one large image cut into blocks that any process can predict.

A block is a region of one slice (2D models) or of the volume (3D models), a few tiles
on a side. It is predicted with the same overlap-tile, blending and normalisation as the
whole image (:class:`~napari_unetseg.core.prediction.RegionPredictor` over the tiles of
the *whole* image that touch the block, reading their context around it), so the blocks
together give the single-process result: the same labels, the probabilities to float
rounding. The normalisation statistics are computed once per slice (or volume) with
:func:`job_statistics` and handed to every block of it.

Each finished block is recorded in a :class:`BlockLedger` beside the output, so a run
that was stopped or lost a worker predicts only the blocks that are missing. Nothing
here knows about dask: :mod:`~napari_unetseg.core.distributed` sends these functions to
its workers.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from napari_unetseg.core.checkpoint import LoadedModel
from napari_unetseg.core.errors import UserInputError
from napari_unetseg.core.events import ZoomEvent, run_generator
from napari_unetseg.core.object_scale import SizeMatch, zoomed, zoomed_back
from napari_unetseg.core.prediction import RegionPredictor, is_volume_model
from napari_unetseg.core.tiler import ImageSource

Statistics = list[tuple[np.ndarray, np.ndarray]]  # per ensemble member: per-channel (low, high)


@dataclass(frozen=True)
class Block:
    """One block: its ``number`` in the plan, the ``job`` it belongs to (the slice for 2D
    models, 0 for the volume of a 3D model) and its ``region`` (slices of the job's
    spatial axes: ``(Y, X)``, or ``(Z, Y, X)`` for 3D models)."""

    number: int
    job: int
    region: tuple[slice, ...]


def plan_blocks(stack_shape: tuple[int, ...], volume: bool, block_size: int, block_depth: int) -> list[Block]:
    """The blocks of a ``(N, C, Y, X)`` stack: ``block_size`` pixels in Y and X, and, for a
    3D model (``volume``), ``block_depth`` slices in Z; blocks at the far edges are smaller."""
    n, _, height, width = stack_shape

    def cuts(length: int, step: int) -> list[slice]:
        return [slice(start, min(start + step, length)) for start in range(0, length, step)]

    planes = cuts(height, block_size), cuts(width, block_size)
    if volume:
        regions = itertools.product(cuts(n, block_depth), *planes)
        return [Block(number, 0, region) for number, region in enumerate(regions)]
    regions = itertools.product(range(n), *planes)
    return [Block(number, job, (ys, xs)) for number, (job, ys, xs) in enumerate(regions)]


def jobs_of(models: Sequence[LoadedModel], stack_shape: tuple[int, ...]) -> list[int]:
    """The jobs whose statistics blocks need: every slice for 2D models, the volume (0) for 3D ones."""
    return [0] if is_volume_model(models[0]) else list(range(stack_shape[0]))


def job_statistics(models: Sequence[LoadedModel], stack, job: int) -> Statistics:
    """Each member's normalisation values for one job, as single-process prediction
    computes them: a 2D model's slice from its own percentiles (0.1 model files: the
    stack's), a 3D model's volume from the stack's."""
    stats = []
    for recipe in (m.normalization for m in models):
        whole = is_volume_model(models[0]) or recipe.scope == "stack"
        stats.append(recipe.percentiles(stack if whole else stack[job : job + 1]))
    return stats


def predict_block(
    predictor: RegionPredictor, stack, stats: Statistics, block: Block
) -> tuple[np.ndarray, np.ndarray]:
    """Labels ``(*region)`` and scores ``(K, *region)`` of one block (probabilities when
    the predictor's ``softmax`` is on). ``stack`` is the lazy ``(N, C, Y, X)`` input:
    only the block and the context of its tiles are read."""
    zoom = predictor.models[0].object_zoom
    if zoom != 1.0:  # a model that learnt zoomed: blocks are whole slices (plan_blocks' block_size)
        scores = whole_slice(predictor, stack, stats, block.job, zoom)[(slice(None), *block.region)]
        return predictor.labels(scores), scores
    if is_volume_model(predictor.models[0]):
        sources = [ImageSource(stack, lo, hi, channels_second=True) for lo, hi in stats]
    else:
        sources = [ImageSource(stack[block.job], lo, hi) for lo, hi in stats]
    scores = run_generator(predictor.iter(sources, block.region))
    return predictor.labels(scores), scores


def whole_slice(predictor: RegionPredictor, stack, stats: Statistics, job: int, zoom: float) -> np.ndarray:
    """The ``(K, Y, X)`` scores of slice ``job`` of a 2D model predicted whole at ``zoom``
    (normalised with the slice's own statistics, ``stats``), zoomed back to the slice."""
    raw = np.asarray(stack[job])  # (C, Y, X)
    sources = [ImageSource(zoomed(raw, zoom), lo, hi) for lo, hi in stats]
    return zoomed_back(run_generator(predictor.iter(sources)), raw.shape[-2:])


def size_matched(
    predictor: RegionPredictor, match: SizeMatch, stack, stats: Statistics, job: int, classes: np.ndarray
) -> tuple[np.ndarray, np.ndarray | None, ZoomEvent | None]:
    """A 2D object model's slice at the scale it learnt, as single-process prediction's size
    match gives it (:class:`~napari_unetseg.core.object_scale.SizeMatch`): the slice's
    block-predicted ``classes`` as they are, or, where their objects lie outside the
    learnt range, the whole slice predicted again zoomed (in this process) and its scores
    zoomed back. Returns the classes, the new scores (``None`` when not zoomed) and the
    :class:`~napari_unetseg.core.events.ZoomEvent` to report."""
    zoom, size = match.zoom_of(classes)
    if zoom == 1.0:
        return classes, None, None
    zoom = match.base * zoom  # the zoom the image is predicted at (a model that learnt zoomed: times its own)
    scores = whole_slice(predictor, stack, stats, job, zoom)
    return predictor.labels(scores), scores, ZoomEvent(job, len(stack), zoom, size, *match.learnt)


def write_block(writers: dict, block: Block, labels: np.ndarray, scores: np.ndarray | None) -> None:
    """Write one block's labels (and scores) into the stack-ordered outputs: ``writers``
    holds a ``labels_out`` (and a ``probabilities_out``) with a ``write(index, slab, region)``."""
    planes = block.region[-2:]
    if len(block.region) == 3:  # a 3D block: one write per slice
        for z, index in enumerate(range(block.region[0].start, block.region[0].stop)):
            writers["labels_out"].write(index, labels[z], planes)
            if "probabilities_out" in writers:
                writers["probabilities_out"].write(index, scores[:, z], planes)
        return
    writers["labels_out"].write(block.job, labels, planes)
    if "probabilities_out" in writers:
        writers["probabilities_out"].write(block.job, scores, planes)


class BlockLedger:
    """What of one output is finished: a folder ``.<name>.blocks`` beside it with one file
    per finished piece of work (``b<n>``: block n predicted; for object models ``o<j>``:
    job j's objects found, the file holding their count, and ``i<n>``: block n's object
    ids written), ``run.json``, the fingerprint of the run that wrote them, and the run's
    scratch arrays. A later run with the same fingerprint takes the finished work over;
    any other run starts again from nothing."""

    def __init__(self, output: Path) -> None:
        self.folder = output.parent / f".{output.name}.blocks"

    def start(self, fingerprint: dict) -> bool:
        """Record ``fingerprint``; whether the folder holds a run with the same one (its
        finished work counts), else it is emptied."""
        record = self.folder / "run.json"
        if record.is_file():
            try:
                same = json.loads(record.read_text()) == fingerprint
            except (OSError, ValueError):
                same = False
            if same:
                return True
            shutil.rmtree(self.folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.folder / ".run.json.part"
        tmp.write_text(json.dumps(fingerprint, indent=1))
        os.replace(tmp, record)
        return False

    def finished(self, kind: str = "b") -> dict[int, str]:
        """The finished pieces of work of one ``kind``: number -> what was recorded."""
        found = {}
        for path in self.folder.glob(f"{kind}*"):
            if path.name[len(kind) :].isdigit():
                found[int(path.name[len(kind) :])] = path.read_text()
        return found

    def mark(self, number: int, kind: str = "b", note: str = "") -> None:
        """Record piece ``number`` of ``kind`` as finished (after its data are written)."""
        tmp = self.folder / f".{kind}{number}.part"
        tmp.write_text(note)
        os.replace(tmp, self.folder / f"{kind}{number}")

    def clear(self) -> None:
        """Forget the run (its output is complete and in place)."""
        shutil.rmtree(self.folder, ignore_errors=True)


class ScratchStack:
    """A plain zarr array in stack order (``(N, Y, X)``) that blocks write into and a later
    stage reads: an object model's predicted classes, and its objects before they are
    numbered over the stack. Chunks are whole blocks; it lives in the ledger's folder."""

    def __init__(self, path: Path, shape: tuple[int, ...], dtype, chunk: int) -> None:
        self.path, self.shape, self.dtype, self.chunk = Path(path), tuple(shape), np.dtype(dtype), chunk
        self._array = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_array": None}

    def create(self) -> None:
        import zarr

        chunks = (1, min(self.chunk, self.shape[1]), min(self.chunk, self.shape[2]))
        self._array = zarr.open_array(
            str(self.path), mode="w", shape=self.shape, chunks=chunks, dtype=self.dtype, fill_value=0
        )

    def attach(self) -> None:
        import zarr

        if self._array is None:
            self._array = zarr.open_array(str(self.path), mode="r+")

    def part_exists(self) -> bool:
        return self.path.exists()

    def write(self, index: int, slab: np.ndarray, region: tuple[slice, slice] | None = None) -> None:
        self.attach()
        self._array[(index, *(region or (slice(None), slice(None))))] = slab

    def read(self, index) -> np.ndarray:
        """Slices ``index`` (an int, a slice, or a tuple of slices) as a numpy array."""
        self.attach()
        return np.asarray(self._array[index])


@dataclass
class SliceStage:
    """The second stage of a block-wise run, once the blocks have written their classes to
    the scratch ``classes``: per job (a slice; the volume when ``volume``), the size match
    (``match_size``, 2D object models) and then either the objects (``recipe``: the
    model's :func:`~napari_unetseg.core.object_sink.object_recipe`), numbered 1..n in the
    scratch ``local``, or, without a recipe, the classes written to ``writers``'
    ``labels_out`` (an object model's class mask). A slice predicted again also has its
    probabilities rewritten, when ``writers`` hold them."""

    classes: ScratchStack
    local: ScratchStack
    volume: bool
    recipe: tuple[int, int, int] | None
    match_size: bool
    writers: dict
    ledger: BlockLedger


def fingerprint(model_files: Sequence[Path], source: Path, stack_shape, settings: dict) -> dict:
    """What makes two runs the same for :class:`BlockLedger`: the model files' contents,
    the input and its shape, and the prediction settings."""
    digests = [hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in model_files]
    return {
        "models": digests,
        "input": str(Path(source).resolve()),
        "shape": [int(n) for n in stack_shape],
        **{key: value for key, value in settings.items()},
    }


def check_block_depth(block_depth: int, tile_depth: int) -> None:
    """Refuse blocks thinner than a 3D model's tiles (each would recompute a whole tile)."""
    if block_depth < tile_depth:
        raise UserInputError(
            f"blocks of {block_depth} slices are thinner than the 3D model's {tile_depth}-slice tiles",
            ("make them thicker", "block_depth"),
            ("use thinner tiles", "tile_depth"),
        )

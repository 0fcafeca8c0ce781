"""Block-wise prediction on a real dask LocalCluster: the single-process result, faults, resume.

Every test predicts images that span several blocks, with nuclei across the block borders,
and compares with ``unetseg predict`` without ``--dask``: labels equal, probabilities to 1e-5.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from functools import partial

import numpy as np
import pytest
import tifffile
import torch
import zarr
from conftest import default_sigint

from napari_unetseg.core.checkpoint import load_model
from napari_unetseg.core.config import PredictConfig
from napari_unetseg.core.file_prediction import predict_files
from napari_unetseg.core.sample import make_sample
from napari_unetseg.core.zarr_io import open_zarr

distributed = pytest.importorskip("distributed")

BLOCKS = {"tile_size": 64, "block_size": 128, "device": "cpu"}  # 300 px: 3 x 3 blocks per slice


def _ome_zarr(path, image, axes="zyx"):
    from ome_zarr.format import FormatV04
    from ome_zarr.writer import write_image

    group = zarr.open_group(str(path), mode="w", zarr_format=2)
    write_image(image, group, axes=axes, fmt=FormatV04(), scale_factors=(2,))
    return path


@pytest.fixture(scope="module")
def large(tmp_path_factory):
    """Two 300 x 300 slices of the sample's nuclei, as OME-Zarr and as TIFF."""
    folder = tmp_path_factory.mktemp("large")
    image = make_sample(n_slices=2, size=300, painted_slices=1, seed=5).image
    tifffile.imwrite(folder / "cells.tif", image, metadata={"axes": "ZYX"})
    return _ome_zarr(folder / "stack.ome.zarr", image), folder / "cells.tif"


@pytest.fixture(scope="module")
def reference(nuclei_model, large, tmp_path_factory):
    """The single-process outputs of both inputs."""
    out = tmp_path_factory.mktemp("reference")
    predict_files(nuclei_model[0], large, out, PredictConfig(**BLOCKS), probabilities=True)
    return out


def _assert_same(out, reference):
    labels = np.asarray(open_zarr(out / "stack.ome.zarr").data)
    expected = np.asarray(open_zarr(reference / "stack.ome.zarr").data)
    assert np.array_equal(labels, expected)
    probabilities = np.asarray(open_zarr(out / "stack_probabilities.ome.zarr").data)
    np.testing.assert_allclose(
        probabilities, np.asarray(open_zarr(reference / "stack_probabilities.ome.zarr").data), atol=1e-5
    )
    assert np.array_equal(tifffile.imread(out / "cells.tif"), tifffile.imread(reference / "cells.tif"))
    np.testing.assert_allclose(
        tifffile.imread(out / "cells_probabilities.tif"),
        tifffile.imread(reference / "cells_probabilities.tif"),
        atol=1e-5,
    )
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no part store or ledger left


def _finished(ledger) -> int:
    """Blocks recorded as finished in a run's ledger folder."""
    return len(list(ledger.glob("b[0-9]*"))) if ledger.exists() else 0


def _wait_for_blocks(ledger, count: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while _finished(ledger) < count and time.monotonic() < deadline:
        time.sleep(0.02)


def test_blocks_give_the_single_process_result(nuclei_model, large, reference, tmp_path):
    expected = np.asarray(open_zarr(reference / "stack.ome.zarr").data)
    nuclei = expected == 2
    for border in (128, 256):  # nuclei cross the block borders in Y and in X
        assert (nuclei[:, border - 1] & nuclei[:, border]).sum() > 20
        assert (nuclei[:, :, border - 1] & nuclei[:, :, border]).sum() > 20
    assert 0.03 < nuclei.mean() < 0.6  # nuclei found (the truth holds 14 %), not everything
    events = []
    written = predict_files(
        nuclei_model[0], large, tmp_path, PredictConfig(**BLOCKS), probabilities=True, dask="local:2",
        on_event=events.append,
    )  # fmt: skip
    assert sorted(p.name for p in written) == sorted(p.name for p in reference.iterdir())
    _assert_same(tmp_path, reference)
    blocks = [e for e in events if type(e).__name__ == "BlockProgress"]
    assert blocks[-1].done == blocks[-1].total == 2 * 2 * 9  # two inputs of 2 slices x 9 blocks


def test_a_killed_worker_loses_nothing(nuclei_model, large, reference, tmp_path):
    """Kill one of two worker processes mid-run: its blocks run again on the other (or on
    the worker its nanny restarts), and the outputs are complete and equal."""
    config = PredictConfig(**{**BLOCKS, "block_size": 64})  # 5 x 5 blocks per slice, 100 in all
    ledger = tmp_path / ".stack.ome.zarr.blocks"
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster:
        with distributed.Client(cluster) as client:
            pids = list(client.run(os.getpid).values())
        outcome = {}

        def run():
            try:
                outcome["written"] = predict_files(
                    nuclei_model[0],
                    large,
                    tmp_path,
                    config,
                    probabilities=True,
                    dask=cluster.scheduler_address,
                )
            except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
                outcome["error"] = exc

        thread = threading.Thread(target=run)
        thread.start()
        _wait_for_blocks(ledger, 5)
        finished_before = _finished(ledger)
        os.kill(pids[0], signal.SIGKILL)
        thread.join(timeout=300)
    assert "error" not in outcome, outcome.get("error")
    assert 5 <= finished_before < 50  # the worker died in the middle of the run
    _assert_same(tmp_path, reference)


def test_ctrl_c_keeps_finished_blocks_and_the_same_command_finishes(nuclei_model, large, reference, tmp_path):
    command = [sys.executable, "-m", "napari_unetseg", "predict", "--model", str(nuclei_model[0])]
    command += ["--out", str(tmp_path), "--probabilities", "--dask", "local:1", "--tile-size", "64"]
    command += ["--block-size", "64", "--device", "cpu", *map(str, large)]
    ledger = tmp_path / ".stack.ome.zarr.blocks"
    process = subprocess.Popen(
        command, stderr=subprocess.PIPE, text=True, start_new_session=True, preexec_fn=default_sigint
    )
    _wait_for_blocks(ledger, 10)
    signalled = _finished(ledger)
    os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole process group
    _, err = process.communicate(timeout=120)
    finished = _finished(ledger) + _finished(tmp_path / ".cells.tif.blocks")  # 50 blocks per input
    assert process.returncode == 130, f"{signalled} blocks done at the signal, {finished} at exit: {err}"
    assert 10 <= finished < 100
    assert not (tmp_path / "stack.ome.zarr").exists() and (tmp_path / ".stack.ome.zarr.part").is_dir()

    again = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert f"resuming: {finished} of 100 tasks were done" in again.stderr
    _assert_same(tmp_path, reference)


def test_a_3d_model_gives_the_single_process_result(tmp_path):
    """A 3D U-Net over blocks in Z, Y and X (block depth = tile depth: context from both sides)."""
    from napari_unetseg.core.workflows import train_from_files

    sample = make_sample(n_slices=12, size=64, painted_slices=12, seed=4)
    tifffile.imwrite(tmp_path / "image.tif", sample.image, metadata={"axes": "ZYX"})
    tifffile.imwrite(tmp_path / "strokes.tif", sample.strokes, metadata={"axes": "ZYX"})
    train_from_files(
        [tmp_path / "image.tif"], [tmp_path / "strokes.tif"], tmp_path / "run",
        model_options={"name": "unet3d", "depth": 2, "base_channels": 8},
        train_options={"steps": 30, "patch_size": 32, "patch_depth": 8, "batch_size": 2, "device": "cpu"},
    )  # fmt: skip
    # 4 channels a layer got NaN weight gradients from oneDNN's bf16 conv3d on CPU at every step
    # (docs/engine.md, "Non-finite steps"); a NaN model would predict the same nothing both ways
    weights = load_model(tmp_path / "run" / "model.pt").model.parameters()
    assert all(torch.isfinite(p).all() for p in weights)
    volume = make_sample(n_slices=20, size=150, painted_slices=1, seed=6).image
    store = _ome_zarr(tmp_path / "volume.ome.zarr", volume)
    config = {"tile_size": 64, "tile_depth": 8, "block_size": 64, "block_depth": 8, "device": "cpu"}
    model = tmp_path / "run" / "model.pt"
    predict_files(model, [store], tmp_path / "one", PredictConfig(**config), probabilities=True)
    predict_files(
        model, [store], tmp_path / "blocks", PredictConfig(**config), probabilities=True, dask="local:2"
    )
    for name in ("volume.ome.zarr", "volume_probabilities.ome.zarr"):
        blocks = np.asarray(open_zarr(tmp_path / "blocks" / name).data)
        one = np.asarray(open_zarr(tmp_path / "one" / name).data)
        np.testing.assert_allclose(blocks, one, atol=1e-5)
    assert np.array_equal(
        np.asarray(open_zarr(tmp_path / "blocks" / "volume.ome.zarr").data),
        np.asarray(open_zarr(tmp_path / "one" / "volume.ome.zarr").data),
    )


def test_an_unreachable_scheduler_is_reported_within_seconds(nuclei_model, tmp_path, cli):
    image = tmp_path / "image.tif"
    tifffile.imwrite(image, nuclei_model[1], metadata={"axes": "ZYX"}, photometric="minisblack")
    start = time.monotonic()
    proc = cli(
        "predict", "--model", nuclei_model[0], "--out", tmp_path / "out", image, "--dask", "tcp://127.0.0.1:9"
    )
    assert proc.returncode == 2 and "cannot reach a dask scheduler" in proc.stderr
    assert time.monotonic() - start < 20  # a 5 s connection timeout, plus starting Python
    assert not (tmp_path / "out").exists()


def test_the_slurm_recipe_runs_as_a_batch_job_would(nuclei_model, large, reference, tmp_path):
    """scripts/dask_slurm.py as far as a machine without SLURM can take it: its batch
    script, run here with bash as a node would run it, gives workers that predict."""
    import importlib.util
    from pathlib import Path

    pytest.importorskip("dask_jobqueue")
    path = Path(__file__).resolve().parents[1] / "scripts" / "dask_slurm.py"
    spec = importlib.util.spec_from_file_location("dask_slurm", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    cluster = module.slurm_cluster(2, "4GB", processes=1, dashboard_address=None)
    try:
        script = cluster.job_script()
        assert "#SBATCH --cpus-per-task=2" in script and "OMP_NUM_THREADS=2" in script
        (tmp_path / "job.sh").write_text(script)
        job = subprocess.Popen(["bash", str(tmp_path / "job.sh")], start_new_session=True)
        try:
            with distributed.Client(cluster.scheduler_address) as client:
                client.wait_for_workers(1, timeout=120)
            out = tmp_path / "out"
            config = PredictConfig(**BLOCKS)
            predict_files(
                nuclei_model[0], large, out, config, probabilities=True, dask=cluster.scheduler_address
            )
        finally:
            os.killpg(job.pid, signal.SIGTERM)
            job.wait(timeout=60)
    finally:
        cluster.close()
    _assert_same(out, reference)


@pytest.fixture(scope="module")
def object_model(tmp_path_factory):
    """A small model trained on touching discs' objects (radius 6-10 px)."""
    from test_instances import touching_discs
    from test_object_mode import nuclei_like

    from napari_unetseg.core.workflows import train_from_files

    folder = tmp_path_factory.mktemp("objects")
    rng = np.random.default_rng(1)
    objects = np.stack([touching_discs((96, 96), seed=s, n=14) for s in range(3)])
    tif = partial(tifffile.imwrite, photometric="minisblack")
    tif(folder / "train.tif", np.stack([nuclei_like(o, rng) for o in objects]), metadata={"axes": "TYX"})
    tif(folder / "objects.tif", objects, metadata={"axes": "TYX"})
    train_from_files(
        [folder / "train.tif"], [folder / "objects.tif"], folder / "run",
        model_options={"depth": 2, "base_channels": 8},
        train_options={"steps": 150, "patch_size": 64, "batch_size": 4, "device": "cpu", "objects": True,
                       "label_mode": "dense"},
    )  # fmt: skip
    return folder / "run" / "model.pt"


def test_objects_across_block_borders_are_the_single_process_objects(object_model, tmp_path):
    """A model trained on objects: blocks predict classes, one task per slice finds its
    objects, and the ids written block by block are the single process's, numbered over
    the stack: objects on block borders are neither cut nor counted twice."""
    from test_instances import touching_discs
    from test_object_mode import nuclei_like

    rng = np.random.default_rng(2)
    tif = partial(tifffile.imwrite, photometric="minisblack")
    big = np.stack([touching_discs((200, 230), seed=10 + s, n=60) for s in range(2)])
    tif(tmp_path / "big.tif", np.stack([nuclei_like(o, rng) for o in big]), metadata={"axes": "ZYX"})
    store = _ome_zarr(tmp_path / "big.ome.zarr", tifffile.imread(tmp_path / "big.tif"))
    # 4 x 4 blocks per slice (the size match: its own test below)
    config = PredictConfig(tile_size=64, block_size=64, device="cpu", match_size=False)
    model = object_model
    predict_files(model, [store, tmp_path / "big.tif"], tmp_path / "one", config)
    written = predict_files(model, [store, tmp_path / "big.tif"], tmp_path / "blocks", config, dask="local:2")
    assert sorted(p.name for p in written) == ["big.ome.zarr", "big.tif"]
    one = np.asarray(open_zarr(tmp_path / "one" / "big.ome.zarr").data)
    assert one.dtype == np.uint32 and one[0].max() > 20 and one[1].min() == 0
    assert np.array_equal(np.asarray(open_zarr(tmp_path / "blocks" / "big.ome.zarr").data), one)
    assert np.array_equal(
        tifffile.imread(tmp_path / "blocks" / "big.tif"), tifffile.imread(tmp_path / "one" / "big.tif")
    )
    crossing = {
        int(i) for i in np.intersect1d(one[:, :, 63], one[:, :, 64]) if i
    }  # ids on both sides of a border
    assert len(crossing) > 5
    first, second = np.unique(one[0][one[0] > 0]), np.unique(one[1][one[1] > 0])
    assert first.max() < second.min()  # numbered over the stack: the second slice goes on from the first

    # --objects-3d: the slices' classes joined into 3D objects, one task of objects for the stack
    inputs = [store, tmp_path / "big.tif"]
    predict_files(model, inputs, tmp_path / "one_3d", config, objects_3d=True)
    predict_files(model, inputs, tmp_path / "blocks_3d", config, dask="local:2", objects_3d=True)
    joined = np.asarray(open_zarr(tmp_path / "one_3d" / "big.ome.zarr").data)
    assert np.array_equal(np.asarray(open_zarr(tmp_path / "blocks_3d" / "big.ome.zarr").data), joined)
    assert np.array_equal(
        tifffile.imread(tmp_path / "blocks_3d" / "big.tif"), tifffile.imread(tmp_path / "one_3d" / "big.tif")
    )
    shared = np.intersect1d(joined[0][joined[0] > 0], joined[1][joined[1] > 0])
    assert len(shared) > 5 and joined.max() < one.max()  # discs over both slices: one object each


def test_blocks_match_the_object_size_as_one_process_does(object_model, tmp_path):
    """A slice whose nuclei are three times smaller than those the model learnt is
    predicted again, zoomed (the size match): block by block too, with the single
    process's objects, class mask (``--semantic``) and probabilities, and the user is
    told which slice of which file."""
    from scipy import ndimage
    from test_instances import touching_discs
    from test_object_mode import nuclei_like

    from napari_unetseg.core.events import ZoomEvent

    rng = np.random.default_rng(3)
    small = ndimage.zoom(nuclei_like(touching_discs((384, 384), seed=7, n=190), rng), 1 / 3, order=1)
    learnt = nuclei_like(touching_discs((128, 128), seed=8, n=24), rng)
    tifffile.imwrite(tmp_path / "mixed.tif", np.stack([learnt, small]), metadata={"axes": "TYX"})
    config = PredictConfig(tile_size=64, block_size=64, device="cpu")  # 2 x 2 blocks per slice
    runs = {"one": (None, False), "blocks": ("local:2", False),
            "one_classes": (None, True), "blocks_classes": ("local:2", True)}  # fmt: skip
    outputs, zooms = {}, {}
    for name, (dask, semantic) in runs.items():
        events = []
        predict_files(object_model, [tmp_path / "mixed.tif"], tmp_path / name, config, probabilities=True,
                      on_event=events.append, semantic=semantic, dask=dask)  # fmt: skip
        zooms[name] = {z.slice_index: z for z in events if isinstance(z, ZoomEvent)}
        assert zooms[name][1].zoom > 2 and zooms[name][1].n_slices == 2, zooms  # the small nuclei's slice
        assert {z.file for z in zooms[name].values()} == {"" if dask is None else "mixed.tif"}
        outputs[name] = [
            tifffile.imread(tmp_path / name / f) for f in ("mixed.tif", "mixed_probabilities.tif")
        ]
    plain = tmp_path / "plain"
    unmatched = replace(config, match_size=False)
    predict_files(object_model, [tmp_path / "mixed.tif"], plain, unmatched, dask="local:2")
    for one, blocks in (("one", "blocks"), ("one_classes", "blocks_classes")):
        assert np.array_equal(outputs[blocks][0], outputs[one][0]), one
        np.testing.assert_allclose(outputs[blocks][1], outputs[one][1], atol=1e-5)
        assert zooms[blocks].keys() == zooms[one].keys()  # the same slices predicted again
    objects, unmatched = outputs["blocks"][0], tifffile.imread(plain / "mixed.tif")
    assert objects[1].max() > 20 and not np.array_equal(objects[1], unmatched[1])  # the small slice, matched

"""Training on several processes with torch.distributed (gloo on the CPU): real torchrun runs
and real process groups."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

from napari_unetseg.core.sample import make_sample

TRAIN = ["--steps", "40", "--patch-size", "64", "--batch-size", "4", "--depth", "2", "--base-channels", "8"]
TRAIN += ["--device", "cpu", "--seed", "3"]


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ddp_data")
    sample = make_sample(n_slices=3, size=96, painted_slices=2, seed=2)
    for name in ("image", "strokes"):
        tifffile.imwrite(
            folder / f"{name}.tif", getattr(sample, name), metadata={"axes": "ZYX"}, photometric="minisblack"
        )
    return ["--images", str(folder / "image.tif"), "--labels", str(folder / "strokes.tif")]


def _torchrun(processes: int, args: list[str], logs: Path):
    import subprocess

    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes)]
    command += ["--log-dir", str(logs), "--redirects", "3", "-m", "napari_unetseg", "train", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)


def _rank_logs(logs: Path, rank: int) -> str:
    return "".join(p.read_text() for p in sorted(logs.rglob(f"{rank}/std*.log")))


def _weights(path: Path) -> dict:
    return torch.load(path, weights_only=True)["state_dict"]


def test_torchrun_trains_on_two_processes_and_resumes(pair, tmp_path):
    run = tmp_path / "run"
    proc = _torchrun(2, [*pair, *TRAIN, "--out", str(run)], tmp_path / "logs")
    assert proc.returncode == 0, (
        proc.stderr + _rank_logs(tmp_path / "logs", 0) + _rank_logs(tmp_path / "logs", 1)
    )
    main, other = _rank_logs(tmp_path / "logs", 0), _rank_logs(tmp_path / "logs", 1)
    assert "training on 2 processes" in main and "training finished at step 40" in main
    assert other.strip() == ""  # rank 1 trains silently
    losses = [row["train_loss"] for row in json.loads((run / "history.json").read_text())]
    assert len(losses) == 4 and losses[-1] < 0.8 * losses[0]  # the loss falls
    assert sorted(p.name for p in run.iterdir()) == [
        "config.json",
        "history.csv",
        "history.json",
        "model.pt",
        "resume.pt",
    ]

    again = _torchrun(2, [*pair, "--resume", str(run), "--steps", "60"], tmp_path / "logs2")
    assert again.returncode == 0, again.stderr + _rank_logs(tmp_path / "logs2", 0)
    history = json.loads((run / "history.json").read_text())
    steps = [row["step"] for row in history]
    assert steps[:4] == [10, 20, 30, 40] and steps[-1] == 60 and len(steps) > 4  # the same run, 20 more steps


def test_one_torchrun_process_is_the_plain_run(pair, tmp_path):
    import subprocess

    assert _torchrun(1, [*pair, *TRAIN, "--out", str(tmp_path / "one")], tmp_path / "logs").returncode == 0
    plain = [sys.executable, "-m", "napari_unetseg", "train", *pair, *TRAIN, "--out", str(tmp_path / "plain")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # as torchrun runs its process: the same float sums
    assert subprocess.run(plain, capture_output=True, env=env, timeout=600).returncode == 0
    one, plain = _weights(tmp_path / "one" / "model.pt"), _weights(tmp_path / "plain" / "model.pt")
    assert one.keys() == plain.keys() and all(torch.equal(one[k], plain[k]) for k in one)


def _rank_main(rank: int, size: int, rendezvous: str, folder: str) -> None:
    """One rank of a two-process run: train, then record what it holds; rank 1 must never
    write the run folder (its model-file writer raises)."""
    import torch.distributed as dist

    import napari_unetseg.core.run_folder as run_folder
    from napari_unetseg.core.config import ModelSpec, RunOptions, TrainConfig
    from napari_unetseg.core.events import run_generator
    from napari_unetseg.core.training import make_trainer

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=rendezvous, rank=rank, world_size=size)
    if rank == 1:

        def refuse(*args, **kwargs):
            raise AssertionError("rank 1 wrote the run folder")

        run_folder.save_model = run_folder.write_history = refuse
    sample = make_sample(n_slices=3, size=96, painted_slices=2, seed=2)
    config = TrainConfig(steps=20, patch_size=64, batch_size=4, device="cpu", steps_per_epoch=10)
    spec, run = ModelSpec(depth=2, base_channels=8), RunOptions(Path(folder) / "run")
    trainer = make_trainer([sample.image[:, None]], [sample.strokes], spec, config, run)
    patches = trainer.sampler.sample(4)[0].sum().item()  # this rank's first patches
    run_generator(trainer.run())
    state = {k: v.detach().clone() for k, v in trainer.model.named_parameters()}
    torch.save({"state": state, "patches": patches}, Path(folder) / f"rank{rank}.pt")
    dist.destroy_process_group()


def test_ranks_sample_their_own_patches_hold_the_same_weights_and_only_rank_0_writes(tmp_path):
    import torch.multiprocessing as mp

    rendezvous = f"file://{tmp_path / 'rendezvous'}"
    mp.spawn(_rank_main, args=(2, rendezvous, str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert ranks[0]["patches"] != ranks[1]["patches"]  # rank-seeded sampling
    # gradients averaged: the same weights on both ranks (BatchNorm's running statistics are
    # rank 0's, which DDP hands to the others before each step, and which rank 0 saves)
    for key, value in ranks[0]["state"].items():
        assert torch.equal(value, ranks[1]["state"][key]), key
    saved = _weights(tmp_path / "run" / "model.pt")  # written by rank 0 alone (rank 1's writer raises)
    assert all(torch.equal(saved[k], ranks[0]["state"][k]) for k in ranks[0]["state"])
    assert np.isfinite(json.loads((tmp_path / "run" / "history.json").read_text())[-1]["train_loss"])

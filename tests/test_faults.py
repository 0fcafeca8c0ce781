"""Faults survived: Ctrl-C during a multi-file prediction, SIGKILL while a model file is
written, and (simulated) CUDA out-of-memory errors in prediction and training."""

from __future__ import annotations

import copy
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tifffile
import torch
from conftest import default_sigint

from napari_unetseg.core.checkpoint import load_model
from napari_unetseg.core.config import ModelSpec, RunOptions, TrainConfig
from napari_unetseg.core.errors import UserInputError
from napari_unetseg.core.sample import make_sample
from napari_unetseg.core.training import train


def _model_file(folder):
    sample = make_sample(n_slices=2, size=64, painted_slices=2, seed=11)
    config = TrainConfig(steps=1, patch_size=32, batch_size=2)
    train([sample.image[:, None]], [sample.strokes], ModelSpec(base_channels=8, depth=2), config,
          RunOptions(run_dir=folder / "run"))  # fmt: skip
    return folder / "run" / "model.pt"


def _wait_for(condition, timeout=120.0):
    end = time.time() + timeout
    while not condition():
        assert time.time() < end, "timed out"
        time.sleep(0.05)


def test_ctrl_c_keeps_finished_outputs_and_no_partial_file(tmp_path):
    model = _model_file(tmp_path)
    inputs = []
    for i in range(12):
        path = tmp_path / f"img{i:02d}.tif"
        tifffile.imwrite(path, np.random.default_rng(i).integers(0, 255, (4, 256, 256), np.uint8),
                         metadata={"axes": "ZYX"}, photometric="minisblack")  # fmt: skip
        inputs.append(path)
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "napari_unetseg", "predict", "--model", model, "--out", out,
         "--tile-size", "64", "--device", "cpu", *inputs],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=default_sigint,
    )  # fmt: skip
    _wait_for(lambda: out.is_dir() and any(out.glob("img*.tif")))
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert stderr.strip().splitlines()[-1].endswith("interrupted")
    written = sorted(out.iterdir())
    assert written and all(p.suffix == ".tif" for p in written)  # no temporary .part file left
    assert len(written) < len(inputs)  # it really was interrupted
    for path in written:
        assert tifffile.imread(path).shape == (4, 256, 256)  # complete, readable


KILLER = """
import sys
from napari_unetseg.core.checkpoint import load_model, save_model
loaded = load_model(sys.argv[1])
print("ready", flush=True)
while True:
    save_model(loaded, sys.argv[1])
"""


def test_sigkill_while_saving_leaves_a_loadable_model(tmp_path):
    model = _model_file(tmp_path)
    before = load_model(model)
    for delay in (0.3, 0.7, 1.1):
        proc = subprocess.Popen([sys.executable, "-c", KILLER, str(model)], stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(delay)  # somewhere in the middle of a torch.save, most likely
        proc.kill()
        proc.wait(timeout=30)
        after = load_model(model)
        assert after.class_values == before.class_values
        for key, value in before.model.state_dict().items():
            assert np.array_equal(after.model.state_dict()[key].numpy(), value.numpy())


class _OutOfMemoryAbove(torch.nn.Module):
    """Wraps a model; its forward raises CUDA's out-of-memory error for batches above ``limit``."""

    def __init__(self, model: torch.nn.Module, limit: int) -> None:
        super().__init__()
        self.model, self.limit, self.sizes = model, limit, []
        self.spatial_dims = model.spatial_dims

    def __deepcopy__(self, memo):  # prediction runs on a copy: let it log into the same list
        twin = _OutOfMemoryAbove(copy.deepcopy(self.model, memo), self.limit)
        twin.sizes = self.sizes
        return twin

    def _check(self, x) -> None:
        self.sizes.append(x.shape[0])
        if x.shape[0] > self.limit:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")

    def forward(self, x):
        self._check(x)
        return self.model(x)

    def forward_heads(self, x):
        self._check(x)
        return self.model.forward_heads(x)


def test_prediction_halves_the_tile_batch_on_out_of_memory():
    from napari_unetseg.core.models import build_model
    from napari_unetseg.core.prediction import predict_tiled

    torch.manual_seed(0)
    model = build_model(ModelSpec(base_channels=4, depth=2)).eval()
    image = np.random.default_rng(0).normal(size=(1, 200, 200)).astype(np.float32)
    reference = predict_tiled(model, image, tile_size=64, batch_size=1, device="cpu")
    flaky = _OutOfMemoryAbove(model, limit=2)
    with pytest.warns(UserWarning) as record:
        scores = predict_tiled(flaky, image, tile_size=64, batch_size=8, device="cpu")
    assert [str(w.message) for w in record] == [
        "out of memory on cpu: tile batch reduced from 8 to 4",
        "out of memory on cpu: tile batch reduced from 4 to 2",
    ]
    assert np.allclose(scores, reference, atol=1e-5)
    assert flaky.sizes[:3] == [8, 4, 2] and max(flaky.sizes[3:]) <= 2  # stays at the size that fitted
    with pytest.raises(UserInputError, match="even with a tile batch of 1"), pytest.warns(UserWarning):
        predict_tiled(_OutOfMemoryAbove(model, limit=0), image, tile_size=64, batch_size=2, device="cpu")


def test_training_halves_the_batch_on_out_of_memory():
    from napari_unetseg.core.training import Trainer

    sample = make_sample(n_slices=2, size=64, painted_slices=2, seed=12)
    trainer = Trainer([sample.image[:, None]], [sample.strokes], ModelSpec(base_channels=4, depth=2),
                      TrainConfig(steps=3, patch_size=32, batch_size=8))  # fmt: skip
    trainer.model = _OutOfMemoryAbove(trainer.model, limit=2)
    with pytest.warns(UserWarning) as record:
        events = list(trainer.run())
    assert [str(w.message) for w in record] == [
        "out of memory on cpu: batch size reduced from 8 to 4",
        "out of memory on cpu: batch size reduced from 4 to 2",
    ]
    assert trainer.step == 3 and trainer.batch_size == 2 and events


def test_paths_with_shell_characters_are_used_as_given(tmp_path):
    """No shell, no eval: a file name full of shell syntax is just a file name."""
    model = _model_file(tmp_path)
    odd = tmp_path / "cells $(touch pwned); `touch pwned2` & x.tif"
    tifffile.imwrite(odd, np.zeros((32, 32), np.uint16))
    out = tmp_path / "out dir; rm -rf ~"
    proc = subprocess.run(
        [sys.executable, "-m", "napari_unetseg", "predict", "--model", model, "--out", out, odd,
         "--device", "cpu"],
        capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert (out / "cells $(touch pwned); `touch pwned2` & x.tif").is_file()
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "pwned2").exists()

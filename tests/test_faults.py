"""Faults survived: Ctrl-C during a multi-file prediction, SIGKILL while a model file is written."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import numpy as np
import tifffile

from napari_unetseg.core.checkpoint import load_model
from napari_unetseg.core.config import ModelSpec, TrainConfig
from napari_unetseg.core.sample import make_sample
from napari_unetseg.core.training import train


def _model_file(folder):
    sample = make_sample(n_slices=2, size=64, painted_slices=2, seed=11)
    config = TrainConfig(steps=1, patch_size=32, batch_size=2)
    train([sample.image[:, None]], [sample.strokes], ModelSpec(base_channels=8, depth=2), config,
          run_dir=folder / "run")  # fmt: skip
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
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
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

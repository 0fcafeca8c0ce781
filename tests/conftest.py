"""Shared fixtures: small synthetic data generated on the fly."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import numpy as np
import pytest

from napari_unetseg.core.sample import make_sample

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def small_sample():
    """A (3, 96, 96) nuclei stack with strokes on the first two slices."""
    return make_sample(n_slices=3, size=96, painted_slices=2, seed=1)


@pytest.fixture(scope="session")
def nuclei_model(tmp_path_factory):
    """A small 2D U-Net that finds the sample's nuclei (120 steps on strokes of two slices):
    its model file and the (3, 96, 96) image it was trained on."""
    import tifffile

    from napari_unetseg.core.workflows import train_from_files

    folder = tmp_path_factory.mktemp("nuclei_model")
    sample = make_sample(n_slices=3, size=96, painted_slices=2, seed=2)
    for name in ("image", "strokes"):
        tifffile.imwrite(
            folder / f"{name}.tif", getattr(sample, name), metadata={"axes": "ZYX"}, photometric="minisblack"
        )
    train_from_files(
        [folder / "image.tif"],
        [folder / "strokes.tif"],
        folder / "run",
        model_options={"depth": 2, "base_channels": 8},
        train_options={
            "steps": 120,
            "patch_size": 64,
            "batch_size": 4,
            "device": "cpu",
            "learning_rate": 0.005,
        },
        class_names=["background", "nucleus"],
    )
    return folder / "run" / "model.pt", sample.image


@pytest.fixture
def cli():
    """Run ``python -m napari_unetseg`` in a subprocess; returns the CompletedProcess."""
    import subprocess

    def run(*args, cwd=None, timeout=600):
        return subprocess.run(
            [sys.executable, "-m", "napari_unetseg", *map(str, args)],
            capture_output=True,
            text=True,
            cwd=cwd,
            timeout=timeout,
        )

    return run


def blobs(n=2, size=64, seed=0):
    """Bright disks on noise: image (n, 1, size, size) float32, dense labels 1/2."""
    from skimage.draw import disk

    rng = np.random.default_rng(seed)
    image = rng.normal(0, 0.3, (n, 1, size, size)).astype(np.float32)
    labels = np.ones((n, size, size), np.uint8)
    for i in range(n):
        for _ in range(max(2, size // 16)):
            rr, cc = disk(rng.integers(8, size - 8, 2), rng.integers(4, 9), shape=(size, size))
            image[i, 0, rr, cc] += 1.5
            labels[i, rr, cc] = 2
    return image, labels


def default_sigint() -> None:
    """``preexec_fn`` of a CLI subprocess that a test interrupts as Ctrl-C in a terminal would:
    a run started in the background (`cmd &`, CI runners) inherits SIGINT ignored, and Python
    then never raises KeyboardInterrupt; the child gets the default handler back."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)

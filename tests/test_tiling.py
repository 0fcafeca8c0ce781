"""Overlap-tile prediction: geometry, blending, agreement with a whole-image pass."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_unetseg.core import tiling
from napari_unetseg.core.config import ModelSpec
from napari_unetseg.core.models import build_model
from napari_unetseg.core.prediction import predict_tiled


@pytest.mark.parametrize("length,tile,overlap", [(100, 64, 16), (64, 64, 16), (1000, 256, 64), (257, 256, 0)])
def test_tile_starts_cover_and_overlap(length, tile, overlap):
    starts = tiling.tile_starts(length, tile, overlap)
    assert starts[0] == 0 and starts[-1] + tile == max(length, tile)
    covered = np.zeros(max(length, tile), bool)
    for s in starts:
        covered[s : s + tile] = True
    assert covered.all()
    gaps = np.diff(starts)
    assert (tile - gaps >= overlap).all()  # at least the requested overlap


def test_blend_weights():
    w = tiling.blend_weights((64, 64), "gaussian")
    assert w.max() == pytest.approx(1.0) and w.min() > 0
    assert w[32, 32] > w[0, 0]
    assert np.array_equal(tiling.blend_weights((8, 8), "constant"), np.ones((8, 8)))


def test_mirror_pad_reflects_border():
    img = np.arange(20, dtype=np.float32).reshape(1, 4, 5)
    padded, (top, left) = tiling.mirror_pad(img, 2, (4, 4))
    assert np.array_equal(padded[:, top : top + 4, left : left + 5], img)
    assert padded[0, top - 1, left] == img[0, 1, 0]  # reflection, not zeros


def _small_model():
    torch.manual_seed(0)
    model = build_model(ModelSpec(depth=2, base_channels=8, norm="batch")).eval()
    for m in model.modules():  # non-trivial BN statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return model


def test_tiled_matches_whole_image_away_from_borders():
    model = _small_model()
    rng = np.random.default_rng(0)
    image = rng.normal(size=(1, 300, 260)).astype(np.float32)
    with torch.no_grad():
        whole = model(torch.from_numpy(image)[None])[0].numpy()
    tiled = predict_tiled(
        model, image, tile_size=96, overlap=0.5, blending="gaussian", precision="fp32", device="cpu"
    )
    assert tiled.shape == whole.shape
    m = 24  # away from the image border (receptive field of the depth-2 net)
    diff = np.abs(tiled - whole)[:, m:-m, m:-m]
    assert diff.max() < 2e-2, diff.max()
    assert np.mean(tiled.argmax(0)[m:-m, m:-m] == whole.argmax(0)[m:-m, m:-m]) > 0.999


def test_tiled_handles_tiny_and_odd_images():
    model = _small_model()
    for shape in [(1, 1), (7, 300), (33, 17)]:
        image = np.random.default_rng(1).normal(size=shape).astype(np.float32)
        out = predict_tiled(model, image, tile_size=64, overlap=0.25, device="cpu", precision="fp32")
        assert out.shape == (2, *shape) and np.isfinite(out).all()


def test_tta_and_batch_size_consistency():
    model = _small_model()
    image = np.random.default_rng(2).normal(size=(1, 130, 150)).astype(np.float32)
    a = predict_tiled(model, image, 64, 0.25, batch_size=1, device="cpu", precision="fp32")
    b = predict_tiled(model, image, 64, 0.25, batch_size=7, device="cpu", precision="fp32")
    np.testing.assert_allclose(a, b, atol=1e-5)
    tta = predict_tiled(model, image, 64, 0.25, tta=True, device="cpu", precision="fp32")
    assert tta.shape == a.shape and not np.allclose(tta, a)

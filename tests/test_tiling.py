"""Overlap-tile prediction: geometry, blending, agreement with a whole-image pass."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_unetseg.core import tiling
from napari_unetseg.core.config import ModelSpec
from napari_unetseg.core.inference import inference_copy
from napari_unetseg.core.models import build_model
from napari_unetseg.core.prediction import iter_tiled, predict_tiled


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


@pytest.mark.parametrize("overlap,pixels", [(0.25, 64), (0, 0), (64, 64), (64.0, 64), (0.5, 128), (None, 64)])
def test_overlap_fraction_or_pixels(overlap, pixels):
    assert tiling.overlap_pixels(overlap, 256) == pixels


@pytest.mark.parametrize("overlap", [-0.1, 1.5, 256, 300, "64"])
def test_overlap_refused(overlap):
    with pytest.raises(ValueError):
        tiling.overlap_pixels(overlap, 256)


@pytest.mark.parametrize("length", [100, 544, 1088, 1000, 2112, 4000])
@pytest.mark.parametrize("tile,overlap", [(256, 64), (512, 64), (1024, 64), (256, 128)])
def test_effective_tile_keeps_the_count_and_covers(length, tile, overlap):
    side, _ = tiling.effective_tile((length, length), tile, 0, overlap)
    assert side % 16 == 0 and side <= max(tile, 16)
    starts = tiling.tile_starts(max(length, side), side, overlap)
    full = tiling.tile_starts(max(length, tile), tile, overlap)
    assert len(starts) <= len(full)  # never more windows than the requested tile needs
    assert starts[-1] + side >= length
    assert (side - np.diff(starts) >= overlap).all()
    if length > tile:  # shrunk as far as the count allows: 16 px less would need more tiles
        assert len(tiling.tile_starts(length, side - 16, overlap)) > len(starts)


def test_fold_batchnorm_keeps_outputs_and_leaves_the_model_alone():
    model = _small_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fast = inference_copy(model, torch.device("cpu"))
    n_bn = sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    assert n_bn > 0 and not any(isinstance(m, torch.nn.BatchNorm2d) for m in fast.modules())
    x = torch.randn(2, 1, 48, 40)
    with torch.no_grad():
        torch.testing.assert_close(fast(x), model(x), rtol=1e-4, atol=1e-4)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


def test_prediction_does_not_switch_a_training_model_to_eval():
    model = _small_model().train()
    predict_tiled(model, np.zeros((40, 40), np.float32), 64, 16, device="cpu")
    assert model.training


def test_an_abandoned_prediction_leaves_gradients_on_in_its_thread():
    """GUI workers reuse pooled threads: a prediction stopped half way must not leave the
    thread in inference mode, or the next training job there cannot backpropagate."""
    image = np.zeros((200, 200), np.float32)
    progress = iter_tiled(_small_model(), image, 64, 16, batch_size=1, device="cpu")
    assert next(progress)[0] == 1
    assert torch.is_grad_enabled() and not torch.is_inference_mode_enabled()
    progress.close()
    assert torch.is_grad_enabled() and not torch.is_inference_mode_enabled()


def _sliding_window_reference(model, image, roi, overlap):
    """An independent sliding window: MONAI's grid (fixed interval, last window flush
    with the border, no padding), gaussian weights sigma = roi/8 floored at 1e-3."""
    _, h, w = image.shape
    interval = int(roi * (1 - overlap))

    def starts(length):
        count = -(-(length - roi) // interval) + 1
        return sorted({min(i * interval, length - roi) for i in range(count)})

    x = (np.arange(roi) - (roi - 1) / 2) / (roi / 8)
    g = np.exp(-0.5 * x**2)
    weight = np.maximum(np.outer(g, g), 1e-3)
    total = np.zeros((2, h, w))
    norm = np.zeros((h, w))
    with torch.no_grad():
        for t in starts(h):
            for s in starts(w):
                out = model(torch.from_numpy(image[None, :, t : t + roi, s : s + roi]))[0].double().numpy()
                total[:, t : t + roi, s : s + roi] += out * weight
                norm[t : t + roi, s : s + roi] += weight
    return total / norm


@pytest.mark.parametrize("overlap", [0.25, 0.5])
def test_same_grid_as_monai_gives_the_same_scores(overlap):
    """The correctness oracle of every speed lever: with MONAI's window grid (no mirror
    margin), fp32, gaussian blending, the result equals a plain sliding window to 1e-4."""
    model = _small_model()
    image = np.random.default_rng(3).normal(size=(1, 256, 160)).astype(np.float32)
    ref = _sliding_window_reference(model, image, 64, overlap)
    ours = predict_tiled(
        model, image, 64, overlap, border="constant", precision="fp32", device="cpu", batch_size=3
    )
    assert np.abs(ours - ref).max() <= 1e-4 * np.abs(ref).max()

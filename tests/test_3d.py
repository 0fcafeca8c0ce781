"""3D U-Net / UNet++ on z-stacks: anisotropic pooling, 3D patches and augmentation,
3D overlap-tile prediction, training end to end."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_unetseg.core.checkpoint import LoadedModel
from napari_unetseg.core.config import ModelSpec, PredictConfig, TrainConfig
from napari_unetseg.core.data import IGNORE, PatchSampler
from napari_unetseg.core.errors import UserInputError
from napari_unetseg.core.models import build_model
from napari_unetseg.core.models.blocks import pool_sizes
from napari_unetseg.core.prediction import predict_stack, predict_tiled
from napari_unetseg.core.sample import make_sample
from napari_unetseg.core.training import train
from napari_unetseg.core.transforms import random_dihedral, random_z_flip


@pytest.mark.parametrize(
    "anisotropy,expected",
    [
        (1.0, [(2, 2, 2)] * 4),
        (2.0, [(1, 2, 2), (2, 2, 2), (2, 2, 2), (2, 2, 2)]),
        (4.0, [(1, 2, 2), (1, 2, 2), (2, 2, 2), (2, 2, 2)]),
        (10.0, [(1, 2, 2), (1, 2, 2), (1, 2, 2), (2, 2, 2)]),
    ],
)
def test_z_is_pooled_once_voxels_are_about_cubic(anisotropy, expected):
    assert pool_sizes(4, 3, anisotropy) == expected
    assert pool_sizes(4, 2, anisotropy) == [(2, 2)] * 4


@pytest.mark.parametrize("name", ["unet3d", "unetplusplus3d"])
def test_anisotropic_network_keeps_every_slice_in_the_first_levels(name):
    model = build_model(ModelSpec(name=name, depth=3, base_channels=4, anisotropy=4.0)).eval()
    assert model.multiples == (2, 8, 8)
    seen = []
    blocks = model.encoders if name == "unet3d" else [model.nodes[f"{i}_0"] for i in range(4)]
    for block in blocks:
        block.register_forward_hook(lambda m, i, o: seen.append(tuple(o.shape[2:])))
    with torch.no_grad():
        out = model(torch.randn(1, 1, 6, 32, 32))
    assert out.shape == (1, 2, 6, 32, 32)
    assert seen[:4] == [(6, 32, 32), (6, 16, 16), (6, 8, 8), (3, 4, 4)]


def test_3d_tiled_prediction_matches_a_whole_volume_forward():
    torch.manual_seed(0)
    model = build_model(ModelSpec(name="unet3d", depth=2, base_channels=4, anisotropy=2.0)).eval()
    volume = np.random.default_rng(0).random((1, 24, 96, 100), dtype=np.float32)
    with torch.no_grad():
        whole = model(torch.from_numpy(volume)[None])[0].numpy()
    inner = (slice(None), slice(6, -6), slice(20, -20), slice(20, -20))  # borders: mirror vs padding
    # fp32: the comparison is with an fp32 forward (auto precision is bf16 on CPUs with AMX)
    one_tile = predict_tiled(model, volume, tile_size=1024, tile_depth=64, device="cpu", precision="fp32")
    assert one_tile.shape == whole.shape
    np.testing.assert_allclose(one_tile[inner], whole[inner], atol=1e-4)
    many = predict_tiled(
        model, volume, tile_size=64, overlap=0.5, tile_depth=16, device="cpu", precision="fp32"
    )
    assert np.abs(many[inner] - whole[inner]).max() < 0.01 * np.abs(whole).max()


def test_3d_patches_are_volumes_centred_on_labels():
    volume = np.random.default_rng(1).random((1, 10, 40, 40), dtype=np.float32)
    target = np.full((10, 40, 40), IGNORE)
    target[7, 30, 5] = 1
    target[2, 3, 33] = 0
    sampler = PatchSampler(
        [volume], [target], (4, 16, 16), 2, 1.0, torch.device("cpu"), torch.Generator().manual_seed(0)
    )
    x, y = sampler.sample(6)
    assert x.shape == (6, 1, 4, 16, 16) and y.shape == (6, 4, 16, 16)
    assert all((y[b] >= 0).any() for b in range(6))  # every patch holds a labelled voxel


def test_3d_augmentation_moves_images_and_labels_together():
    g = torch.Generator().manual_seed(0)
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).view(2, 1, 3, 4, 4).repeat(4, 1, 1, 1, 1)
    y = x[:, 0].long()
    for fn in (random_dihedral, random_z_flip):
        ax, ay = fn(x, y, g)
        assert torch.equal(ax[:, 0].long(), ay)
    flipped, _ = random_z_flip(x, y, torch.Generator().manual_seed(3))
    assert any(torch.equal(flipped[b], x[b].flip(1)) for b in range(len(x)))
    assert any(torch.equal(flipped[b], x[b]) for b in range(len(x)))


@pytest.mark.parametrize("name", ["unet3d", "unetplusplus3d"])
def test_3d_model_learns_from_strokes_and_segments_the_stack(name):
    sample = make_sample(n_slices=12, size=64, painted_slices=3, seed=1)
    spec = ModelSpec(name=name, depth=2, base_channels=8, anisotropy=2.0)
    config = TrainConfig(steps=30, patch_size=32, patch_depth=8, batch_size=2, learning_rate=3e-3)
    loaded = train([sample.image[:, None]], [sample.strokes], spec, config).loaded
    assert loaded.model.spatial_dims == 3 and loaded.spec.name == name
    result = predict_stack(loaded, sample.image[:, None], PredictConfig(tile_size=64, tile_depth=16))
    assert result.labels.shape == sample.truth.shape and set(np.unique(result.labels)) <= {1, 2}
    p, t = result.labels == 2, sample.truth == 2
    assert 2 * (p & t).sum() / (p.sum() + t.sum()) > 0.6
    # the slice in view: predicted from the slab around it, like the whole stack there
    part = predict_stack(
        loaded, sample.image[:, None], PredictConfig(tile_size=64, tile_depth=16), slices=[6]
    )
    assert (part.labels[0] == result.labels[6]).mean() > 0.99


def test_3d_models_refuse_single_slices_and_the_2d_smoothness_term():
    sample = make_sample(n_slices=1, size=48, painted_slices=1, seed=0)
    spec = ModelSpec(name="unet3d", depth=2, base_channels=4)
    with pytest.raises(UserInputError, match="z-stacks"):
        train([sample.image[:, None]], [sample.strokes], spec, TrainConfig(steps=1, patch_size=32))
    sample = make_sample(n_slices=4, size=48, painted_slices=2, seed=0)
    with pytest.raises(UserInputError, match="smoothness"):
        config = TrainConfig(steps=1, patch_size=32, advanced={"smoothness_weight": 1.0})
        train([sample.image[:, None]], [sample.strokes], spec, config)


def test_3d_loaded_model_predicts_through_the_stack_api():
    torch.manual_seed(0)
    spec = ModelSpec(name="unetplusplus3d", depth=2, base_channels=4)
    loaded = LoadedModel(build_model(spec).eval(), spec, (3, 7))
    stack = np.random.default_rng(0).random((5, 1, 40, 36), dtype=np.float32)
    result = predict_stack(loaded, stack, PredictConfig(tile_size=32, tile_depth=4), probabilities=True)
    assert result.labels.shape == (5, 40, 36) and set(np.unique(result.labels)) <= {3, 7}
    np.testing.assert_allclose(result.probabilities.sum(1), 1, atol=1e-5)

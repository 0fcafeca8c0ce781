"""Prediction with several model files (an ensemble): each predicts with its own recipe
and the class probabilities are averaged."""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
import pytest
import tifffile
import torch

from napari_unetseg.core.checkpoint import LoadedModel, load_model, save_model
from napari_unetseg.core.config import ModelSpec, PredictConfig, TrainConfig
from napari_unetseg.core.errors import UserInputError
from napari_unetseg.core.models import build_model
from napari_unetseg.core.normalization import Normalization
from napari_unetseg.core.prediction import check_ensemble, predict_stack
from napari_unetseg.core.sample import make_sample
from napari_unetseg.core.training import train


def _model(seed: int, name: str = "unet", values=(1, 2), **recipe) -> LoadedModel:
    """An untrained model (class values, normalisation and correction as given)."""
    torch.manual_seed(seed)
    spec = ModelSpec(name=name, depth=2, base_channels=4)
    spec = spec.replace(normalization=recipe.pop("normalization", Normalization()))
    return LoadedModel(build_model(spec).eval(), spec, values, **recipe)


@functools.cache
def _trained(seed: int, name: str = "unet") -> LoadedModel:
    """A short dense training on the synthetic sample: labels that vary over the image."""
    sample = make_sample(n_slices=4, size=48, painted_slices=2, seed=0)
    spec = ModelSpec(name=name, depth=2, base_channels=4)
    config = TrainConfig(
        label_mode="dense",
        steps=30,
        steps_per_epoch=30,
        validation_fraction=0,
        patch_size=32,
        patch_depth=4,
        batch_size=4,
        learning_rate=5e-3,
        seed=seed,
    )
    return train([sample.image[:, None]], [sample.truth], spec, config).loaded


def _assert_average(members: list[LoadedModel], stack: np.ndarray, config: PredictConfig):
    """The ensemble's probabilities are the members' mean, its labels that mean's argmax."""
    alone = [predict_stack(m, stack, config, probabilities=True) for m in members]
    both = predict_stack(members, stack, config, probabilities=True)
    mean = sum(result.probabilities for result in alone) / len(alone)
    np.testing.assert_allclose(both.probabilities, mean, atol=1e-6)
    clear = np.abs(mean[:, 0] - mean[:, 1]) > 1e-5  # not a tie within rounding
    assert clear.mean() > 0.9
    np.testing.assert_array_equal(both.labels[clear], np.array([1, 2])[mean.argmax(1)][clear])
    return alone, both


def test_an_ensemble_averages_its_members_probabilities():
    stack = make_sample(n_slices=4, size=48, painted_slices=2, seed=5).image[:, None]
    config = PredictConfig(tile_size=32, overlap=8)
    # different weights, normalisation recipes and class-prior corrections
    a = dataclasses.replace(_trained(0), logit_bias=(0.3, -0.3))
    b = _trained(1)
    b = dataclasses.replace(b, spec=b.spec.replace(normalization=Normalization(low=5.0, high=95.0)))
    alone, both = _assert_average([a, b], stack, config)
    assert (alone[0].labels != alone[1].labels).any()  # the members disagree somewhere
    for member in alone:  # and the average is neither of them
        assert (both.labels != member.labels).any()
    one = predict_stack([a], stack, config, probabilities=True)  # an ensemble of one is the model
    np.testing.assert_array_equal(one.labels, alone[0].labels)
    np.testing.assert_array_equal(one.probabilities, alone[0].probabilities)


def test_a_3d_ensemble_averages_over_the_volume():
    stack = np.random.default_rng(0).gamma(2.0, 50.0, (6, 1, 36, 40)).astype(np.float32)
    a = _model(0, "unet3d", logit_bias=(0.3, -0.3))
    b = _model(1, "unet3d", normalization=Normalization(low=5.0, high=95.0))
    _assert_average([a, b], stack, PredictConfig(tile_size=32, overlap=8, tile_depth=4))


def test_models_that_cannot_be_averaged_are_refused():
    base = _model(0)
    with pytest.raises(UserInputError, match="same classes"):
        check_ensemble([base, _model(1, values=(1, 3))])
    other_spec = dataclasses.replace(base.spec, in_channels=3)
    three = LoadedModel(build_model(other_spec), other_spec, (1, 2))
    with pytest.raises(UserInputError, match="same kind of image"):
        check_ensemble([base, three])
    with pytest.raises(UserInputError, match="2D and 3D"):
        check_ensemble([base, _model(1, "unet3d")])
    with pytest.raises(UserInputError, match="no model"):
        check_ensemble([])


def test_cli_predicts_with_repeated_model_options(tmp_path, capsys):
    """``unetseg predict --model A --model B`` writes what the core ensemble gives."""
    from napari_unetseg.cli import main

    image = make_sample(n_slices=2, size=48, painted_slices=1, seed=3).image
    tifffile.imwrite(tmp_path / "image.tif", image, metadata={"axes": "ZYX"})
    members = [_trained(0), dataclasses.replace(_trained(1), logit_bias=(-2.0, 2.0))]
    paths = [save_model(member, tmp_path / f"m{rank}.pt") for rank, member in enumerate(members)]
    args = ["predict", "--model", str(paths[0]), "--model", str(paths[1]), "--out", str(tmp_path / "out")]
    assert main([*args, str(tmp_path / "image.tif"), "--tile-size", "32", "--device", "cpu"]) == 0
    written = tifffile.imread(tmp_path / "out" / "image.tif")
    config = PredictConfig(tile_size=32, device="cpu")
    expected = predict_stack([load_model(p) for p in paths], image[:, None], config).labels
    np.testing.assert_array_equal(written, expected)
    singles = [predict_stack(load_model(path), image[:, None], config).labels for path in paths]
    assert (singles[0] != singles[1]).any()
    assert any((written != single).any() for single in singles)  # not just one of the members
    capsys.readouterr()

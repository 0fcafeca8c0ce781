"""Class-prior correction for sparse labels (core/priors.py and its use in training)."""

from __future__ import annotations

import dataclasses

import numpy as np
from conftest import blobs
from scipy.stats import norm
from skimage.measure import label as connected_components

from napari_unetseg.core.checkpoint import load_model
from napari_unetseg.core.config import ModelSpec, RunOptions, TrainConfig
from napari_unetseg.core.events import run_generator
from napari_unetseg.core.jobs import start_training
from napari_unetseg.core.prediction import predict_stack
from napari_unetseg.core.priors import estimate_prior, object_prior_bias, prior_shift_bias
from napari_unetseg.core.training import train


def _exact_posteriors(x: np.ndarray, prior: np.ndarray) -> np.ndarray:
    """Bayes posteriors of two unit gaussians at -1 and +1 under ``prior``."""
    likelihood = np.stack([norm.pdf(x, -1, 1), norm.pdf(x, 1, 1)], axis=1)
    joint = likelihood * prior
    return joint / joint.sum(1, keepdims=True)


def test_em_recovers_the_prior_of_unlabelled_samples():
    rng = np.random.default_rng(0)
    true_prior = np.array([0.2, 0.8])
    classes = rng.random(20000) < true_prior[1]
    x = np.where(classes, rng.normal(1, 1, classes.size), rng.normal(-1, 1, classes.size))
    train_prior = np.array([0.6, 0.4])  # the classifier saw the first class more often
    estimate = estimate_prior(_exact_posteriors(x, train_prior), train_prior)
    sample_prior = np.array([1 - classes.mean(), classes.mean()])
    assert np.allclose(estimate, sample_prior, atol=0.02)
    bias = prior_shift_bias(_exact_posteriors(x, train_prior), train_prior)
    # the corrected posteriors are the Bayes posteriors under the true prior
    corrected = np.log(_exact_posteriors(x, train_prior)) + bias
    bayes = _exact_posteriors(x, true_prior)[:, 1] > 0.5
    assert ((corrected[:, 1] > corrected[:, 0]) == bayes).mean() > 0.99


def test_no_shift_gives_no_bias():
    rng = np.random.default_rng(1)
    prior = np.array([0.3, 0.7])
    classes = rng.random(20000) < prior[1]
    x = np.where(classes, rng.normal(1, 1, classes.size), rng.normal(-1, 1, classes.size))
    assert np.abs(prior_shift_bias(_exact_posteriors(x, prior), prior)).max() < 0.1


def test_a_class_nobody_painted_keeps_a_zero_offset():
    rng = np.random.default_rng(2)
    posteriors = rng.dirichlet([1, 1, 1], size=5000)
    bias = prior_shift_bias(posteriors, np.array([0.5, 0.0, 0.5]))
    assert np.all(np.isfinite(bias)) and bias[1] == 0
    assert not np.any(prior_shift_bias(posteriors, np.array([1.0, 0.0, 0.0])))


def _overpainted_disks():
    """Every disk pixel painted, background only along two thin lines: the strokes say
    "mostly disk" while disks cover a small part of the image."""
    image, dense = blobs(n=2, size=64, seed=3)
    strokes = np.where(dense == 2, 2, 0).astype(np.uint8)
    for row in (3, 60):
        strokes[:, row] = np.where(dense[:, row] == 1, 1, strokes[:, row])
    return image, dense, strokes


def test_sparse_training_stores_a_correction_that_prediction_applies(tmp_path):
    image, dense, strokes = _overpainted_disks()
    config = TrainConfig(
        steps=60, patch_size=32, batch_size=4, steps_per_epoch=30, device="cpu", learning_rate=5e-3
    )
    spec = ModelSpec(depth=2, base_channels=8)
    train([image], [strokes], spec, config, RunOptions(run_dir=tmp_path / "run"))
    loaded = load_model(tmp_path / "run" / "model.pt")
    assert loaded.class_values == (1, 2) and len(loaded.logit_bias) == 2
    painted_disk = (strokes == 2).sum() / (strokes > 0).sum()
    assert painted_disk > 0.5 > (dense == 2).mean()
    assert loaded.logit_bias[1] < loaded.logit_bias[0]  # disks were over-painted: their score goes down

    corrected = predict_stack(loaded, image, probabilities=True)
    plain = predict_stack(dataclasses.replace(loaded, logit_bias=()), image, probabilities=True)
    expected = np.log(plain.probabilities) + np.asarray(loaded.logit_bias)[:, None, None]
    assert np.array_equal(corrected.labels, np.asarray(loaded.class_values)[expected.argmax(1)])
    assert (corrected.labels == 2).sum() <= (plain.labels == 2).sum()


def test_dense_labels_and_the_switch_leave_scores_alone():
    image, dense, strokes = _overpainted_disks()
    base = dict(steps=4, patch_size=32, batch_size=2, steps_per_epoch=2, device="cpu")
    spec = ModelSpec(depth=2, base_channels=8)
    assert train([image], [dense], spec, TrainConfig(label_mode="dense", **base)).loaded.logit_bias == ()
    off = TrainConfig(advanced={"prior_correction": False}, **base)
    assert train([image], [strokes], spec, off).loaded.logit_bias == ()


def test_painted_objects_correct_only_the_background_share_and_half_of_it():
    """Stop 44: the full EM offsets (background +2.3 to +3.4) wiped out the rim of painted
    objects on two of three seeds of DSB2018. Objects are painted whole: inside them the
    painted proportions are the true ones, and only the background's share is estimated."""
    rng = np.random.default_rng(0)
    truth = rng.choice(3, size=20000, p=[0.8, 0.05, 0.15])  # unpainted: mostly background
    x = rng.normal(2.0 * truth - 2, 1)  # classes as unit gaussians at -2, 0, 2
    train_prior = np.full(3, 1 / 3)  # what the class-weighted loss saw
    likelihood = np.stack([norm.pdf(x, m, 1) for m in (-2, 0, 2)], 1)
    posteriors = likelihood * train_prior / (likelihood * train_prior).sum(1, keepdims=True)
    within = np.array([0.25, 0.75])  # interior, boundary inside the painted objects
    full = object_prior_bias(posteriors, train_prior, within, shrink=1.0)
    new = train_prior * np.exp(full) / (train_prior * np.exp(full)).sum()
    assert abs(new[0] - 0.8) < 0.03  # the background's share, by EM
    assert np.isclose(new[2] / new[1], 3)  # core : rim as painted, not as estimated
    assert np.allclose(object_prior_bias(posteriors, train_prior, within), full / 2)  # the default: half


def test_a_run_on_painted_objects_stores_the_object_correction():
    image, dense, _ = _overpainted_disks()
    disks = connected_components(dense == 2)
    painted = np.where(disks > 0, disks + 1, 0).astype(np.uint32)  # each disk painted whole: 2, 3
    painted[:, 3] = np.where(dense[:, 3] == 1, 1, painted[:, 3])  # and a background stroke
    base = dict(steps=4, patch_size=32, batch_size=2, steps_per_epoch=2, device="cpu")
    config = TrainConfig(objects=True, **base)
    assert config.label_mode == "sparse" and config.advanced.prior_correction
    trainer = start_training([image], [painted], ModelSpec(depth=2, base_channels=8), config, RunOptions())
    assert trainer.priors.within is not None and np.isclose(trainer.priors.within.sum(), 1)
    bias = run_generator(trainer.run()).loaded.logit_bias
    assert len(bias) == 3 and bias[0] > 0  # background up: the disks were painted, not the rest

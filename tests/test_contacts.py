"""Object runs weigh where objects touch (core/contacts.py): the levels, their way through
the patch sampler, and the pixel-weighted cross-entropy."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from test_instances import touching_discs

from napari_unetseg.core.config import TrainConfig
from napari_unetseg.core.contacts import CONTACT_WEIGHT, contact_levels, touching
from napari_unetseg.core.data import IGNORE
from napari_unetseg.core.instances import instance_classes, training_classes
from napari_unetseg.core.losses import masked_cross_entropy, masked_soft_dice, segmentation_loss, split_target
from napari_unetseg.core.normalization import Normalization
from napari_unetseg.core.training_setup import TrainingData, prepare_data


def two_touching_and_one_alone() -> np.ndarray:
    objects = np.zeros((40, 64), np.uint32)
    objects[10:30, 5:25] = 1
    objects[10:30, 25:45] = 2  # touches object 1 along column 24/25
    objects[12:20, 52:60] = 3  # touches nothing
    return objects


def test_the_weight_peaks_where_two_objects_touch_and_fades_away_from_it():
    objects = two_touching_and_one_alone()
    levels = contact_levels(instance_classes(objects).astype(np.int64))
    assert levels[10:30, 24:26].min() == CONTACT_WEIGHT  # the contact itself
    row = levels[20, :50].astype(int)
    assert (np.diff(row[:25]) >= 0).all() and (np.diff(row[25:]) <= 0).all()  # falls off both ways
    assert levels[20, 10] == 0 and levels[20, 40] == 0  # 10+ px away: nothing
    assert levels[:, 48:].max() == 0  # the lone object and the background around it
    assert (levels[:2] == 0).all()


def test_no_contact_no_weight_and_ignored_pixels_carry_none():
    objects = two_touching_and_one_alone()
    objects[objects == 2] = 0
    assert contact_levels(instance_classes(objects).astype(np.int64)).max() == 0
    target = instance_classes(two_touching_and_one_alone()).astype(np.int64)
    target[:, 38:] = IGNORE  # object 2 is partly ignored, its core partly seen
    levels = contact_levels(target)
    assert levels[:, 38:].max() == 0 and levels[10:30, 24:26].min() == CONTACT_WEIGHT
    assert contact_levels(target, weight=0).max() == 0


def test_touching_is_where_two_ids_meet_in_2d_and_3d():
    objects = np.zeros((3, 4, 4), np.uint32)
    objects[:, :, :2] = 1
    objects[1:, :, 2:] = 2  # slice 0: object 1 alone; slices 1-2: 1 and 2 side by side
    contact = touching(objects)
    assert not contact[0].any()
    assert contact[1:, :, 1:3].all() and not contact[1:, :, [0, 3]].any()
    assert np.array_equal(touching(objects[2]), contact[2])
    volume_levels = contact_levels(instance_classes(np.repeat(two_touching_and_one_alone()[None], 5, 0)))
    assert volume_levels[:, 10:30, 24:26].min() == CONTACT_WEIGHT


def test_painted_objects_weigh_only_where_two_painted_objects_touch():
    painted = np.zeros((1, 40, 64), np.uint32)
    painted[0, 10:30, 5:25], painted[0, 10:30, 25:45] = 2, 3  # two touching objects, painted whole
    painted[0, 35:38, 5:60] = 1  # a background stroke
    target = training_classes(painted, "sparse")[0].astype(np.int64) - 1  # encoded: unpainted -1
    levels = contact_levels(target)
    assert levels[10:30, 24:26].min() == CONTACT_WEIGHT and levels[target < 0].max() == 0


def test_pixel_weights_of_zero_change_nothing_and_weigh_otherwise():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 8, 8)
    target = torch.randint(0, 3, (2, 8, 8))
    target[:, :2] = IGNORE
    classes = torch.tensor([1.0, 2.0, 0.5])
    expected = F.cross_entropy(logits, target, weight=classes, ignore_index=IGNORE)
    zero = torch.zeros_like(target)
    assert torch.allclose(masked_cross_entropy(logits, target, classes, zero), expected)
    assert torch.allclose(masked_cross_entropy(logits, target, classes), expected)
    levels = torch.randint(0, 5, target.shape)
    per_pixel = F.cross_entropy(logits, target, ignore_index=IGNORE, reduction="none")
    w = (1 + levels.float()) * (target >= 0)
    by_hand = (per_pixel * w).sum() / w.sum()
    assert torch.allclose(masked_cross_entropy(logits, target, None, levels), by_hand)


def test_packed_targets_split_back_into_classes_and_levels():
    target = torch.tensor([[-1, 0, 1, 2], [0 + 3 * 4, 1 + 3 * 10, 2 + 3 * 1, -1]])
    classes, levels = split_target(target, 3)
    assert classes.tolist() == [[-1, 0, 1, 2], [0, 1, 2, -1]]
    assert levels.tolist() == [[0, 0, 0, 0], [4, 10, 1, 0]]
    logits = torch.randn(1, 3, 2, 4)
    packed = segmentation_loss(logits, target[None])
    expected = masked_cross_entropy(logits, classes[None], None, levels[None]) + masked_soft_dice(
        logits, classes[None]
    )
    assert torch.isclose(packed, expected)
    assert not torch.isclose(packed, segmentation_loss(logits, classes[None]))  # the levels weigh


def sampled_targets(objects: np.ndarray, config: TrainConfig) -> tuple[TrainingData, torch.Tensor]:
    """The training data of dense object labels (one (Z, C, Y, X) image) and 16 targets drawn from it."""
    image = objects[:, None].astype(np.float32) + np.random.default_rng(0).normal(
        0, 1, objects[:, None].shape
    )
    classes = training_classes(objects, "dense")
    data = prepare_data([image], [classes], [0, 1, 2], "dense", Normalization(), config, False,
                        torch.device("cpu"), torch.Generator().manual_seed(0))  # fmt: skip
    return data, data.sampler.sample(16)[1]


def test_an_object_run_samples_its_contact_levels_with_the_classes():
    objects = np.stack([touching_discs((96, 96), seed=s) for s in range(4)])
    config = TrainConfig(objects=True, label_mode="dense", patch_size=32, validation_fraction=0)
    _, packed = sampled_targets(objects, config)
    classes, levels = split_target(packed, 3)
    assert classes.min() >= IGNORE and classes.max() == 2
    assert levels.max() == CONTACT_WEIGHT
    plain, plain_targets = sampled_targets(objects, config.replace(objects=False))
    assert plain.sampler.levels is None
    assert torch.equal(plain_targets, classes)  # the same patches, without the levels

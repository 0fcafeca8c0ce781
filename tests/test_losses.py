"""Losses on labelled pixels only, and the edge-aware smoothness term."""

from __future__ import annotations

import torch

from napari_unetseg.core.losses import (
    edge_aware_smoothness,
    masked_soft_dice,
    segmentation_loss,
    transform_consistency,
)
from napari_unetseg.core.transforms import dihedral, random_zoom_grid, warp


def test_unlabelled_pixels_do_not_change_the_loss():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 16, 16, requires_grad=True)
    target = torch.randint(0, 3, (2, 16, 16))
    target[:, :8] = -1
    loss = segmentation_loss(logits, target)
    loss.backward()
    assert logits.grad[:, :, :8].abs().max() == 0  # no gradient where nothing is painted
    assert logits.grad[:, :, 8:].abs().max() > 0
    altered = logits.detach().clone()
    altered[:, :, :8] = torch.randn(2, 3, 8, 16) * 10
    assert torch.allclose(segmentation_loss(altered, target), loss)


def test_all_unlabelled_gives_zero_not_nan():
    logits = torch.randn(1, 2, 8, 8, requires_grad=True)
    target = torch.full((1, 8, 8), -1)
    assert segmentation_loss(logits, target).item() == 0
    assert masked_soft_dice(logits, target).item() == 0


def test_class_weights_favour_the_weighted_class():
    logits = torch.zeros(1, 2, 4, 4)
    target = torch.zeros(1, 4, 4, dtype=torch.long)
    target[..., :2] = 1
    plain = segmentation_loss(logits, target, dice_weight=0)
    weighted = segmentation_loss(logits, target, torch.tensor([1.0, 3.0]), dice_weight=0)
    assert torch.isclose(plain, weighted)  # uniform prediction: weighting changes nothing
    confident = torch.zeros(1, 2, 4, 4)
    confident[:, 0] = 2.0  # predicts class 0 everywhere: wrong on the weighted class
    assert segmentation_loss(confident, target, torch.tensor([1.0, 3.0]), dice_weight=0) > segmentation_loss(
        confident, target, dice_weight=0
    )


def _two_regions(boundary_col: int) -> torch.Tensor:
    logits = torch.full((1, 2, 16, 16), -5.0)
    logits[:, 0, :, :boundary_col] = 5.0
    logits[:, 1, :, boundary_col:] = 5.0
    return logits


def test_smoothness_prefers_boundaries_on_image_edges():
    image = torch.zeros(1, 1, 16, 16)
    image[..., 8:] = 1.0  # an intensity edge between columns 7 and 8
    on_edge = edge_aware_smoothness(_two_regions(8), image)
    off_edge = edge_aware_smoothness(_two_regions(4), image)
    assert on_edge < 0.1 * off_edge
    constant = torch.zeros(1, 2, 16, 16)
    constant[:, 0] = 10.0
    assert edge_aware_smoothness(constant, image) < 1e-4  # one label everywhere costs nothing


def test_consistency_is_zero_only_for_equivariant_views_and_teaches_the_second():
    torch.manual_seed(0)
    first = torch.randn(2, 3, 12, 12, requires_grad=True)
    for k in range(1, 8):
        assert transform_consistency(first, dihedral(first, k), k) < 1e-10  # the turned view agrees
    second = torch.randn(2, 3, 12, 12, requires_grad=True)
    loss = transform_consistency(first, second, 3)
    assert loss > 0.05
    loss.backward()
    assert first.grad is None  # the first view is the (detached) teacher
    assert second.grad.abs().max() > 0


def test_consistency_with_a_zoom_compares_the_views_resampled_the_same_way():
    torch.manual_seed(0)
    coarse = torch.randn(2, 3, 4, 4) * 3
    first = torch.nn.functional.interpolate(coarse, size=(32, 32), mode="bicubic", align_corners=False)
    grid = random_zoom_grid(2, 32, 32, 2.0, torch.Generator().manual_seed(1))
    matched = transform_consistency(first, warp(dihedral(first, 5), grid), 5, grid)
    unzoomed = transform_consistency(first, dihedral(first, 5), 5, grid)
    assert matched < 0.02 * unzoomed  # only the resampling of logits vs probabilities differs
    identity = random_zoom_grid(2, 32, 32, 1.0, torch.Generator())
    plain = transform_consistency(first, dihedral(first, 5), 5)
    assert torch.allclose(transform_consistency(first, dihedral(first, 5), 5, identity), plain, atol=1e-6)

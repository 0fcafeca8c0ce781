"""Batch augmentations: geometry moves images and labels together, labels stay labels."""

from __future__ import annotations

import numpy as np
import torch

from napari_unetseg.core.data import IGNORE
from napari_unetseg.core.transforms import random_deformation, random_dihedral, random_zoom_grid, warp


def _rings(size: int = 96) -> tuple[torch.Tensor, torch.Tensor]:
    """Images that are their own labels: concentric bands 0/1/2 and an unpainted corner."""
    yy, xx = np.mgrid[:size, :size]
    r = np.hypot(yy - size / 2 + 7, xx - size / 2 + 3)
    labels = (r // 12 % 3).astype(np.int64)
    images = torch.from_numpy(labels.astype(np.float32))[None, None].repeat(6, 1, 1, 1)
    targets = torch.from_numpy(labels)[None].repeat(6, 1, 1)
    targets[:, :10, :10] = IGNORE
    return images, targets


def test_deformation_moves_images_and_labels_together():
    images, targets = _rings()
    warped, labels = random_deformation(images, targets, torch.Generator().manual_seed(0))
    assert warped.shape == images.shape and labels.shape == targets.shape
    assert labels.dtype == targets.dtype
    assert set(labels.unique().tolist()) <= {IGNORE, 0, 1, 2}
    # it really deforms: every sample differs from the input and from the others
    assert all((labels[i] != targets[i]).float().mean() > 0.2 for i in range(6))
    assert (labels[0] != labels[1]).float().mean() > 0.2
    # ... and labels follow the image: where the bilinear image is a clean level, it is the label
    painted = labels != IGNORE
    clean = (warped[:, 0] - warped[:, 0].round()).abs() < 1e-4
    agree = warped[:, 0].round().long() == labels
    assert agree[painted & clean].float().mean() > 0.98
    assert (painted & clean).float().mean() > 0.5


def test_deformation_is_seeded_and_leaves_3d_batches_alone():
    images, targets = _rings()
    a = random_deformation(images, targets, torch.Generator().manual_seed(1))
    b = random_deformation(images, targets, torch.Generator().manual_seed(1))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    volume, vol_targets = torch.rand(2, 1, 4, 32, 32), torch.zeros(2, 4, 32, 32, dtype=torch.long)
    same = random_deformation(volume, vol_targets, torch.Generator().manual_seed(1))
    assert same[0] is volume and same[1] is vol_targets


def test_dihedral_keeps_pairs_aligned():
    images, targets = _rings()
    turned, labels = random_dihedral(images, targets, torch.Generator().manual_seed(0))
    painted = labels != IGNORE
    assert torch.equal(turned[:, 0].long()[painted], labels[painted])
    assert not torch.equal(labels, targets)


def test_zoom_grid_scales_about_the_centre_within_its_range():
    disk = torch.zeros(1, 1, 64, 64)
    yy, xx = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    r2 = (yy - 31.5).square() + (xx - 31.5).square()
    disk[0, 0] = (r2 < 12**2).float()  # 448 px
    centre = (r2 < 24**2).float()
    same = warp(disk, random_zoom_grid(1, 64, 64, 1.0, torch.Generator().manual_seed(0)))
    assert torch.allclose(same, disk, atol=1e-5)  # max_zoom 1: the identity
    areas = []
    for seed in range(40):
        grid = random_zoom_grid(1, 64, 64, 2.0, torch.Generator().manual_seed(seed))
        zoom = float(grid[0, 0, -1, 0] / same.new_tensor(63 / 64))  # x of the right edge: the factor
        area = float((warp(disk, grid) * centre).sum())  # zoomed out, mirror copies lie outside
        assert 0.5 - 1e-4 <= zoom <= 2.0 + 1e-4
        assert abs(area - float(disk.sum()) / zoom**2) < 0.05 * float(disk.sum()) / zoom**2 + 5
        areas.append(area)
    assert min(areas) < 0.5 * float(disk.sum()) < 2 * float(disk.sum()) < max(areas)  # both ways
    a = random_zoom_grid(3, 16, 16, 2.0, torch.Generator().manual_seed(5))
    assert torch.equal(a, random_zoom_grid(3, 16, 16, 2.0, torch.Generator().manual_seed(5)))


def test_zoom_scales_image_and_labels_together():
    from napari_unetseg.core.transforms import augment

    generator = torch.Generator().manual_seed(3)
    images = torch.zeros(6, 1, 64, 64)
    images[:, :, 24:40, 24:40] = 1.0  # a 16 px square in the middle
    targets = (images[:, 0] > 0.5).long()
    out, labels = augment(images, targets, generator, zoom=2.0)
    areas = (labels == 1).sum(dim=(1, 2)).float()
    assert areas.min() < 0.8 * 256 or areas.max() > 1.25 * 256  # zoomed in or out
    low, high = out[:, 0].amin(dim=(1, 2), keepdim=True), out[:, 0].amax(dim=(1, 2), keepdim=True)
    bright = out[:, 0] > (low + high) / 2
    assert ((bright == (labels == 1)).float().mean() > 0.97).item()  # the labels follow the image

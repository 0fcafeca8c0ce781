"""Augmentation of whole batches on the training device."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def random_dihedral(
    images: torch.Tensor, targets: torch.Tensor, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply one of the 8 flips/rot90s of the square to each sample of a batch.

    ``images`` is ``(B, C, P, P)``, ``targets`` ``(B, P, P)``; samples sharing a
    transform are processed together, so there are at most 8 tensor operations.
    3D batches ``(B, C, Z, P, P)`` are turned in-plane (y, x) the same way.
    """
    choice = torch.randint(8, (images.shape[0],), generator=generator).to(images.device)
    out_images, out_targets = images.clone(), targets.clone()
    for k in range(1, 8):
        sel = choice == k
        if bool(sel.any()):
            out_images[sel], out_targets[sel] = dihedral(images[sel], k), dihedral(targets[sel], k)
    return out_images, out_targets


def dihedral(tensor: torch.Tensor, k: int) -> torch.Tensor:
    """The ``k``-th (0-7) flip/rot90 of the square over the last two axes (0 = identity)."""
    if k >= 4:
        tensor = tensor.flip(-1)
    return torch.rot90(tensor, k % 4, dims=(-2, -1))


def random_intensity(
    images: torch.Tensor, generator: torch.Generator, scale: float = 0.2, shift: float = 0.1
) -> torch.Tensor:
    """Per-sample random contrast (x[1-s, 1+s]) and brightness (+-shift) jitter."""
    b = images.shape[0]
    factor = 1 + (torch.rand(b, generator=generator) * 2 - 1) * scale
    offset = (torch.rand(b, generator=generator) * 2 - 1) * shift
    shape = (b,) + (1,) * (images.ndim - 1)
    factor = factor.to(images.device).view(shape)
    offset = offset.to(images.device).view(shape)
    return images * factor + offset


def random_zoom_grid(
    batch: int, height: int, width: int, max_zoom: float, generator: torch.Generator
) -> torch.Tensor:
    """Sampling grids for :func:`warp` that zoom each sample about the patch centre.

    The factor is log-uniform in ``[1 / max_zoom, max_zoom]``: above 1 the grid reaches
    beyond the patch and its content comes out smaller (zoomed out), below 1 larger.
    Returns ``(batch, height, width, 2)`` in ``grid_sample``'s [-1, 1] units;
    ``max_zoom == 1`` gives the identity.
    """
    log_zoom = (torch.rand(batch, generator=generator) * 2 - 1) * math.log(max_zoom)
    theta = torch.zeros(batch, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = torch.exp(log_zoom)
    return F.affine_grid(theta, [batch, 1, height, width], align_corners=False)


def warp(tensor: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Resample a ``(B, C, Y, X)`` batch bilinearly on ``grid``, mirrored outside the patch."""
    grid = grid.to(device=tensor.device, dtype=tensor.dtype)
    return F.grid_sample(tensor, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def random_z_flip(
    images: torch.Tensor, targets: torch.Tensor, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Flip half of a 3D batch (``(B, C, Z, Y, X)``, ``(B, Z, Y, X)``) along z."""
    flip = (torch.rand(images.shape[0], generator=generator) < 0.5).to(images.device)
    images = torch.where(flip.view(-1, 1, 1, 1, 1), images.flip(2), images)
    targets = torch.where(flip.view(-1, 1, 1, 1), targets.flip(1), targets)
    return images, targets


def random_deformation(
    images: torch.Tensor,
    targets: torch.Tensor,
    generator: torch.Generator,
    max_scale: float = 0.2,
    elastic_pixels: float = 8.0,
    grid_points: int = 4,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random rotation, scaling and smooth elastic warp of a 2D batch, as in the U-Net paper.

    Each sample gets its own rotation (any angle), isotropic scale in
    ``[1 - max_scale, 1 + max_scale]`` and a smooth displacement field: random offsets
    (standard deviation ``elastic_pixels``) on a ``grid_points`` x ``grid_points`` grid,
    up-sampled bicubically. Images are resampled bilinearly, targets (class indices,
    ``IGNORE`` included) by nearest neighbour; outside the patch both are mirrored.
    ``images`` is ``(B, C, P, P)``, ``targets`` ``(B, P, P)``; 3D batches are returned
    unchanged.
    """
    if images.ndim != 4:
        return images, targets
    b, _, h, w = images.shape
    angle = torch.rand(b, generator=generator) * 2 * torch.pi
    scale = 1 + (torch.rand(b, generator=generator) * 2 - 1) * max_scale
    cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0], theta[:, 0, 1], theta[:, 1, 0], theta[:, 1, 1] = cos, -sin, sin, cos
    grid = F.affine_grid(theta, [b, 1, h, w], align_corners=False)
    coarse = torch.randn(b, 2, grid_points, grid_points, generator=generator) * elastic_pixels
    field = F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=True)
    field = field.permute(0, 2, 3, 1) * torch.tensor([2.0 / w, 2.0 / h])  # pixels -> [-1, 1] units
    grid = (grid + field).to(device=images.device, dtype=images.dtype)
    options = {"padding_mode": "reflection", "align_corners": False}
    warped = warp(images, grid)
    labels = F.grid_sample(targets[:, None].to(images.dtype), grid, mode="nearest", **options)
    return warped, labels[:, 0].round().to(targets.dtype)


def augment(
    images: torch.Tensor,
    targets: torch.Tensor,
    generator: torch.Generator,
    deform: bool = False,
    zoom: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The training augmentation of a batch: a flip/rot90 per sample (and a z flip in 3D),
    contrast/brightness jitter, with ``deform`` the geometric warp of 2D batches, and with
    ``zoom`` > 1 a random zoom of each 2D sample in [1/zoom, zoom]."""
    images, targets = random_dihedral(images, targets, generator)
    if images.ndim == 5:
        images, targets = random_z_flip(images, targets, generator)
    images = random_intensity(images, generator)
    if deform:
        images, targets = random_deformation(images, targets, generator)
    if zoom > 1 and images.ndim == 4:
        b, _, h, w = images.shape
        grid = random_zoom_grid(b, h, w, zoom, generator).to(device=images.device, dtype=images.dtype)
        images = warp(images, grid)
        labels = F.grid_sample(targets[:, None].to(images.dtype), grid, mode="nearest",
                               padding_mode="reflection", align_corners=False)  # fmt: skip
        targets = labels[:, 0].round().to(targets.dtype)
    return images, targets


def second_view(
    images: torch.Tensor, max_zoom: float, generator: torch.Generator
) -> tuple[int, torch.Tensor | None, torch.Tensor]:
    """The consistency term's view of a batch: ``(turn, grid, view)``, the batch turned by a
    random non-trivial flip/rot90 ``turn``, jittered, and zoomed on ``grid`` (2D, when
    ``max_zoom`` > 1; else ``grid`` is ``None``)."""
    turn = int(torch.randint(1, 8, (1,), generator=generator))
    view = random_intensity(dihedral(images, turn), generator)
    grid = None
    if max_zoom > 1 and images.ndim == 4:
        b, _, h, w = images.shape
        grid = random_zoom_grid(b, h, w, max_zoom, generator)
        view = warp(view, grid)
    return turn, grid, view

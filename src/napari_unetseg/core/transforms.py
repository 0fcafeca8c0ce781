"""Augmentation of whole batches on the training device."""

from __future__ import annotations

import torch


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
    for k in range(8):
        sel = choice == k
        if k == 0 or not bool(sel.any()):
            continue
        img, tgt = images[sel], targets[sel]
        if k >= 4:
            img, tgt = img.flip(-1), tgt.flip(-1)
        img = torch.rot90(img, k % 4, dims=(-2, -1))
        tgt = torch.rot90(tgt, k % 4, dims=(-2, -1))
        out_images[sel], out_targets[sel] = img, tgt
    return out_images, out_targets


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


def random_z_flip(
    images: torch.Tensor, targets: torch.Tensor, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Flip half of a 3D batch (``(B, C, Z, Y, X)``, ``(B, Z, Y, X)``) along z."""
    flip = (torch.rand(images.shape[0], generator=generator) < 0.5).to(images.device)
    images = torch.where(flip.view(-1, 1, 1, 1, 1), images.flip(2), images)
    targets = torch.where(flip.view(-1, 1, 1, 1), targets.flip(1), targets)
    return images, targets

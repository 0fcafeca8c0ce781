"""Losses computed on labelled pixels only (``target == -1`` is ignored)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from napari_unetseg.core.data import IGNORE


def masked_cross_entropy(
    logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None
) -> torch.Tensor:
    """Cross-entropy over labelled pixels, optionally class-weighted."""
    if not bool((target != IGNORE).any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits.float(), target, weight=weight, ignore_index=IGNORE)


def masked_soft_dice(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """``1 - mean soft Dice`` over the classes present in the labelled pixels of the batch."""
    num_classes = logits.shape[1]
    mask = (target != IGNORE).unsqueeze(1).float()
    if not bool(mask.any()):
        return logits.sum() * 0.0
    probs = torch.softmax(logits.float(), dim=1) * mask
    onehot = F.one_hot(target.clamp(min=0), num_classes).permute(0, 3, 1, 2).float() * mask
    dims = (0, 2, 3)
    intersection = (probs * onehot).sum(dims)
    truth = onehot.sum(dims)
    dice = (2 * intersection + eps) / (probs.sum(dims) + truth + eps)
    present = truth > 0
    return 1 - dice[present].mean()


def segmentation_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None = None,
    dice_weight: float = 1.0,
) -> torch.Tensor:
    """Masked cross-entropy + ``dice_weight`` x masked soft Dice."""
    loss = masked_cross_entropy(logits, target, weight)
    if dice_weight:
        loss = loss + dice_weight * masked_soft_dice(logits, target)
    return loss

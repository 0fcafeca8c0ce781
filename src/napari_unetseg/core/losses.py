"""Losses computed on labelled pixels only (``target == -1`` is ignored)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from napari_unetseg.core.data import IGNORE
from napari_unetseg.core.transforms import dihedral, warp


def split_target(target: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(classes, levels)`` of a training target: a labelled pixel may carry a weight
    level as ``class + num_classes * level`` (object runs:
    :func:`~napari_unetseg.core.contacts.contact_levels`, packed by
    :class:`~napari_unetseg.core.data.PatchSampler`); ignored pixels stay ``-1``, level 0."""
    labelled = target >= 0
    classes = torch.where(labelled, target % num_classes, target)
    levels = torch.where(labelled, target // num_classes, 0)
    return classes, levels


def masked_cross_entropy(
    logits: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None = None,
    levels: torch.Tensor | None = None,
) -> torch.Tensor:
    """Cross-entropy over labelled pixels, optionally class-weighted (``weight``) and
    pixel-weighted (``1 + levels``): the weighted mean, normalised by the sum of the
    weights over the labelled pixels (as ``F.cross_entropy`` normalises class weights)."""
    labelled = target != IGNORE
    if not bool(labelled.any()):
        return logits.sum() * 0.0
    if levels is None or not bool(levels.any()):  # no pixel weights: torch's own mean, as before stop 44
        return F.cross_entropy(logits.float(), target, weight=weight, ignore_index=IGNORE)
    loss = F.cross_entropy(logits.float(), target, weight=weight, ignore_index=IGNORE, reduction="none")
    pixel = 1 + levels.float()  # the class weights are in ``loss`` already, and in its normaliser
    total = (pixel * labelled if weight is None else pixel * weight[target.clamp(min=0)] * labelled).sum()
    return (loss * pixel).sum() / total


def masked_soft_dice(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """``1 - mean soft Dice`` over the classes present in the labelled pixels of the batch."""
    num_classes = logits.shape[1]
    mask = (target != IGNORE).unsqueeze(1).float()
    if not bool(mask.any()):
        return logits.sum() * 0.0
    probs = torch.softmax(logits.float(), dim=1) * mask
    onehot = F.one_hot(target.clamp(min=0), num_classes).movedim(-1, 1).float() * mask
    dims = (0, *range(2, logits.ndim))
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
    """Masked cross-entropy (pixel-weighted where the target carries weight levels,
    :func:`split_target`) + ``dice_weight`` x masked soft Dice."""
    classes, levels = split_target(target, logits.shape[1])
    loss = masked_cross_entropy(logits, classes, weight, levels)
    if dice_weight:
        loss = loss + dice_weight * masked_soft_dice(logits, classes)
    return loss


def edge_aware_smoothness(
    logits: torch.Tensor, image: torch.Tensor, radius: int = 2, sigma: float = 0.05
) -> torch.Tensor:
    """Local CRF-style regulariser for sparse labels, over *all* pixels.

    For neighbours ``i, j`` within ``radius``, penalises different class distributions
    (``1 - p_i . p_j``) with weight ``exp(-|I_i - I_j|^2 / (2 sigma^2))``: labels may
    change where the (normalised) intensity changes and nowhere else. This places the
    boundaries in the unpainted gap between strokes of different classes on image
    edges (cf. Tang et al., "On regularized losses for weakly-supervised CNN
    segmentation", ECCV 2018; Obukhov et al., "Gated CRF loss", 2019).
    """
    probs = torch.softmax(logits.float(), dim=1)
    image = image.float()
    h, w = probs.shape[-2:]
    total, count = probs.new_zeros(()), 0
    for dy in range(0, radius + 1):
        for dx in range(-radius, radius + 1):
            if (dy == 0 and dx <= 0) or dy * dy + dx * dx > radius * radius:
                continue  # each unordered pair once, within a disc
            ys, yd = slice(0, h - dy), slice(dy, h)
            xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
            diff = (image[..., ys, xs] - image[..., yd, xd]).square().sum(1)
            weight = torch.exp(-diff / (2 * sigma**2))
            agree = (probs[..., ys, xs] * probs[..., yd, xd]).sum(1)
            total = total + (weight * (1 - agree)).mean()
            count += 1
    return total / count


def transform_consistency(
    logits: torch.Tensor, logits_turned: torch.Tensor, k: int, grid: torch.Tensor | None = None
) -> torch.Tensor:
    """Disagreement between two views of the same patches, over *all* pixels.

    ``logits_turned`` was predicted from ``dihedral(x, k)`` (plus intensity jitter),
    resampled on ``grid`` when one is given (:func:`~napari_unetseg.core.transforms.warp`,
    a random zoom), ``logits`` from ``x``. The class probabilities of the first view,
    turned and resampled the same way and detached, are the target of the second: mean
    over pixels of the squared difference summed over classes (the Pi-model /
    mean-teacher consistency of Laine & Aila 2017 and Tarvainen & Valpola 2017, with
    the network as its own teacher).
    """
    target = dihedral(torch.softmax(logits.float(), dim=1).detach(), k)
    if grid is not None:
        target = warp(target, grid)
    return (torch.softmax(logits_turned.float(), dim=1) - target).square().sum(1).mean()


def training_loss(
    heads: list[torch.Tensor],
    images: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None,
    advanced,
    consistency: float = 0.0,
    turn: int = 0,
    grid: torch.Tensor | None = None,
) -> torch.Tensor:
    """The loss of one training step.

    :func:`segmentation_loss` on the labelled pixels, averaged over the heads (deep
    supervision); with ``turn`` the batch holds a second view (:func:`~napari_unetseg.core.
    transforms.second_view`) in its second half, and ``consistency`` times
    :func:`transform_consistency` between the two views is added; and the edge-aware
    smoothness term when ``advanced`` (the :class:`~napari_unetseg.core.config.AdvancedOptions`)
    weighs it.
    """
    term = 0.0
    if turn:
        b = target.shape[0]
        term = consistency * transform_consistency(heads[-1][:b], heads[-1][b:], turn, grid)
        heads, images = [h[:b] for h in heads], images[:b]
    loss = (
        sum(segmentation_loss(h.float(), target, weight, advanced.dice_weight) for h in heads) / len(heads)
        + term
    )
    if advanced.smoothness_weight:
        loss = loss + advanced.smoothness_weight * edge_aware_smoothness(
            heads[-1], images, sigma=advanced.smoothness_sigma
        )
    return loss

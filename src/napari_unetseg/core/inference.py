"""Make a trained network fast to run: an inference copy with BatchNorm folded away.

At inference a BatchNorm layer is a fixed per-channel scale and shift, so it can be
folded into the weights of the convolution right before it (one pass over the
activations fewer per block). Channels-last memory lets oneDNN (CPU) and cuDNN (GPU)
pick their fastest convolution kernels. Both leave the results equal to float32
rounding; the caller's model is never modified.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval


def fold_batchnorm(model: nn.Module) -> int:
    """Fold every ``Conv2d -> BatchNorm2d`` (or 3D) pair inside an ``nn.Sequential``, in place.

    The convolution gets the BatchNorm's scale and shift (eval statistics), the
    BatchNorm becomes ``nn.Identity``. Returns the number of pairs folded. Layers
    in any other arrangement are left as they are, so any module is safe to pass.
    """
    folded = 0
    for module in model.modules():
        if not isinstance(module, nn.Sequential):
            continue
        for i in range(len(module) - 1):
            conv, norm = module[i], module[i + 1]
            if (
                (type(conv), type(norm)) in ((nn.Conv2d, nn.BatchNorm2d), (nn.Conv3d, nn.BatchNorm3d))
                and norm.track_running_stats
                and norm.running_mean is not None
            ):
                module[i] = fuse_conv_bn_eval(conv, norm)
                module[i + 1] = nn.Identity()
                folded += 1
    return folded


def inference_copy(model: nn.Module, device: torch.device) -> nn.Module:
    """An eval-mode copy of ``model`` on ``device``, BatchNorm folded, channels-last where it helps."""
    fast = copy.deepcopy(model).eval()
    fold_batchnorm(fast)
    fast = fast.to(device)
    return fast.to(memory_format=channels_last_format(fast, device))


def channels_last_format(model: nn.Module, device: torch.device) -> torch.memory_format:
    """The memory layout ``model``'s convolutions run in on ``device``: channels-last helps
    them on CPU (oneDNN) and CUDA, MPS keeps the default layout. ``channels_last`` for 2D
    networks, ``channels_last_3d`` for 3D ones (a 3D U-Net's training step on CPU takes 1.4x
    as long in the default layout: ``benchmarks/nan_3d.py``)."""
    if device.type not in ("cpu", "cuda"):
        return torch.contiguous_format
    return torch.channels_last_3d if getattr(model, "spatial_dims", 2) == 3 else torch.channels_last

"""Building blocks shared by the 2D segmentation networks."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def make_norm(kind: str, channels: int) -> nn.Module:
    """Normalisation layer by name: ``batch``, ``instance``, ``group`` or ``none``."""
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    if kind == "group":
        return nn.GroupNorm(min(8, channels), channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {kind!r}")


class ConvBlock(nn.Sequential):
    """Two 3x3 convolutions, each followed by normalisation and ReLU (the U-Net unit)."""

    def __init__(self, in_channels: int, out_channels: int, norm: str = "batch") -> None:
        bias = norm == "none"
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=bias),
            make_norm(norm, out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=bias),
            make_norm(norm, out_channels),
            nn.ReLU(inplace=True),
        )


class Upsample2x(nn.Module):
    """2x up-sampling: bilinear followed by a 1x1 conv, or a learned transposed conv."""

    def __init__(self, in_channels: int, out_channels: int, mode: str = "bilinear") -> None:
        super().__init__()
        self.mode = mode
        if mode == "transpose":
            self.op = nn.ConvTranspose2d(in_channels, out_channels, 2, stride=2)
        elif mode == "bilinear":
            self.op = nn.Conv2d(in_channels, out_channels, 1)
        else:
            raise ValueError(f"unknown upsample mode {mode!r}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "bilinear":
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        return self.op(x)


class SegmentationModel(nn.Module):
    """Base class: pads any input to a multiple of ``2**depth`` and crops the output.

    Subclasses implement :meth:`_forward_heads`, returning a list of logit maps (one
    per supervised head, the one used for prediction last), and name in
    :attr:`class_layers` the sub-modules whose weights belong to particular classes
    (re-initialised when fine-tuning on other classes).
    """

    class_layers: tuple[str, ...] = ("head", "heads")

    def __init__(self, depth: int) -> None:
        super().__init__()
        self.depth = depth

    def _forward_heads(self, x: torch.Tensor) -> list[torch.Tensor]:
        raise NotImplementedError

    def _padded(self, x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        multiple = 2**self.depth
        h, w = x.shape[-2:]
        ph, pw = (-h) % multiple, (-w) % multiple
        if ph or pw:
            mode = "reflect" if (ph < h and pw < w) else "replicate"
            x = F.pad(x, (0, pw, 0, ph), mode=mode)
        return x, h, w

    def forward_heads(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Logits of every supervised head, each (B, K, H, W) at the input size."""
        x, h, w = self._padded(x)
        return [out[..., :h, :w] for out in self._forward_heads(x)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (B, K, H, W) of the prediction head, for any H and W."""
        return self.forward_heads(x)[-1]

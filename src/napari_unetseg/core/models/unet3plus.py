"""UNet 3+ (Huang et al. 2020): full-scale skip connections and full-scale deep supervision.

Encoder levels ``0..depth`` as in U-Net. The decoder stage at level ``i`` (from
``depth-1`` up to 0) fuses *every* scale, each brought to level ``i`` and reduced to
``base_channels`` channels by a 3x3 convolution:

* encoder maps of the same and finer levels ``k <= i``, max-pooled by ``2**(i-k)``;
* decoder maps of coarser levels ``i < k < depth`` and the bottleneck (encoder ``depth``),
  bilinearly up-sampled by ``2**(k-i)``.

The ``depth + 1`` branches are concatenated and fused by a 3x3 convolution. With deep
supervision each decoder stage and the bottleneck get a 3x3 head whose output is
bilinearly up-sampled to the input size, and each gets a loss. The paper's
classification-guided module (an image-level "is the organ present" branch that
zeroes the masks of empty images) is not included: painted training patches always
hold labelled pixels, so it has nothing to learn from here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from napari_unetseg.core.models.blocks import ConvBlock, SegmentationModel, make_norm


def _conv_norm_relu(in_channels: int, out_channels: int, norm: str) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=norm == "none"),
        make_norm(norm, out_channels),
        nn.ReLU(inplace=True),
    )


def _resize(x: torch.Tensor, shift: int) -> torch.Tensor:
    """Bring ``x`` ``shift`` levels coarser (max-pool) or ``-shift`` finer (bilinear)."""
    if shift > 0:
        return F.max_pool2d(x, 2**shift, 2**shift)
    if shift < 0:
        return F.interpolate(x, scale_factor=2 ** (-shift), mode="bilinear", align_corners=False)
    return x


class UNet3Plus(SegmentationModel):
    """2D UNet 3+ with full-scale skips and optional full-scale deep supervision.

    Parameters
    ----------
    in_channels, num_classes, depth, base_channels, norm
        As for :class:`~napari_unetseg.core.models.unet.UNet`.
    deep_supervision : bool
        Train a head on every decoder stage and the bottleneck; :meth:`forward_heads`
        then returns all of them (coarsest first, the prediction head last).
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        depth: int = 4,
        base_channels: int = 32,
        norm: str = "batch",
        deep_supervision: bool = True,
    ) -> None:
        super().__init__(depth)
        self.deep_supervision = deep_supervision
        widths = [base_channels * 2**i for i in range(depth + 1)]
        branch = base_channels  # the paper's CatChannels (64 with 5 branches of 320)
        fused = branch * (depth + 1)
        self.encoders = nn.ModuleList()
        previous = in_channels
        for width in widths:
            self.encoders.append(ConvBlock(previous, width, norm))
            previous = width
        self.pool = nn.MaxPool2d(2)
        # branches[i][k]: brings the map of level k (encoder if k <= i or k == depth,
        # else decoder) to decoder level i with `branch` channels
        self.branches = nn.ModuleList()
        self.fuse = nn.ModuleList()
        for i in range(depth):
            sources = [widths[k] if k <= i or k == depth else fused for k in range(depth + 1)]
            self.branches.append(nn.ModuleList(_conv_norm_relu(c, branch, norm) for c in sources))
            self.fuse.append(_conv_norm_relu(fused, fused, norm))
        n_heads = depth + 1 if deep_supervision else 1
        self.heads = nn.ModuleList(
            nn.Conv2d(widths[depth] if deep_supervision and j == 0 else fused, num_classes, 3, padding=1)
            for j in range(n_heads)
        )

    def _forward_heads(self, x: torch.Tensor) -> list[torch.Tensor]:
        encoded = []
        for level, encoder in enumerate(self.encoders):
            x = encoder(x if level == 0 else self.pool(x))
            encoded.append(x)
        decoded: dict[int, torch.Tensor] = {self.depth: encoded[self.depth]}
        for i in reversed(range(self.depth)):
            parts = []
            for k, conv in enumerate(self.branches[i]):
                source = encoded[k] if k <= i else decoded[k]
                parts.append(conv(_resize(source, i - k)))
            decoded[i] = self.fuse[i](torch.cat(parts, dim=1))
        if not (self.training and self.deep_supervision):
            return [self.heads[-1](decoded[0])]
        return [
            _resize(head(decoded[level]), -level)
            for head, level in zip(self.heads, range(self.depth, -1, -1))
        ]

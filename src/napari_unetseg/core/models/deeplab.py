"""DeepLab v3+ (Chen et al. 2018): atrous residual encoder, ASPP and a light decoder.

* Encoder: a ResNet-18-style network (7x7 stem with stride 2, max-pool, four stages
  of two basic residual blocks). Stages 2 and 3 halve the resolution; stage 4 keeps
  it and dilates its convolutions by 2 instead, so the output stride is 16.
* ASPP on the encoder output: a 1x1 convolution, three 3x3 convolutions with atrous
  rates 6, 12 and 18, and image pooling (global average, 1x1 convolution, broadcast
  back), concatenated and projected by a 1x1 convolution.
* Decoder: the ASPP output up-sampled 4x (to stride 4) is concatenated with the
  stage-1 features reduced by a 1x1 convolution, refined by two 3x3 convolutions,
  classified by a 1x1 convolution and up-sampled 4x to the input size.

Widths scale with ``base_channels`` (64 = ResNet-18 with the paper's 256-channel ASPP
and 48 low-level channels). No pretrained weights: everything trains from scratch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from napari_unetseg.core.models.blocks import SegmentationModel, make_norm

ATROUS_RATES = (6, 12, 18)


def _conv_norm_relu(
    in_channels: int, out_channels: int, kernel: int, norm: str, dilation: int = 1
) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(
            in_channels,
            out_channels,
            kernel,
            padding=dilation * (kernel // 2),
            dilation=dilation,
            bias=norm == "none",
        ),
        make_norm(norm, out_channels),
        nn.ReLU(inplace=True),
    )


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with an identity (or 1x1 projection) shortcut."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, dilation: int, norm: str) -> None:
        super().__init__()
        bias = norm == "none"
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, stride, padding=dilation, dilation=dilation, bias=bias),
            make_norm(norm, out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=dilation, dilation=dilation, bias=bias),
            make_norm(norm, out_channels),
        )
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=bias), make_norm(norm, out_channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + self.shortcut(x))


def _stage(in_channels: int, out_channels: int, stride: int, dilation: int, norm: str) -> nn.Sequential:
    return nn.Sequential(
        BasicBlock(in_channels, out_channels, stride, dilation, norm),
        BasicBlock(out_channels, out_channels, 1, dilation, norm),
    )


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling: 1x1, three dilated 3x3 and image pooling."""

    def __init__(self, in_channels: int, out_channels: int, norm: str, rates=ATROUS_RATES) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            [_conv_norm_relu(in_channels, out_channels, 1, norm)]
            + [_conv_norm_relu(in_channels, out_channels, 3, norm, dilation=r) for r in rates]
        )
        # image pooling: a 1x1 map, so no batch statistics (they fail for a batch of one)
        self.image_pool = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1), nn.ReLU(inplace=True))
        self.project = nn.Sequential(
            _conv_norm_relu(out_channels * (len(rates) + 2), out_channels, 1, norm), nn.Dropout(0.1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.image_pool(x.mean(dim=(2, 3), keepdim=True)).expand(-1, -1, *x.shape[-2:])
        return self.project(torch.cat([b(x) for b in self.branches] + [pooled], dim=1))


class DeepLabV3Plus(SegmentationModel):
    """DeepLab v3+ with output stride 16 on a ResNet-18-style encoder.

    Parameters
    ----------
    in_channels, num_classes : int
        Input channels and output classes.
    base_channels : int
        Width of the stem and first stage (64 in ResNet-18); stages use 1, 2, 4, 8
        times it, ASPP and decoder 4 times it, the low-level projection 3/4 of it.
    norm : str
        See :func:`~napari_unetseg.core.models.blocks.make_norm`.
    """

    class_layers = ("classifier",)

    def __init__(
        self, in_channels: int, num_classes: int, base_channels: int = 32, norm: str = "batch"
    ) -> None:
        super().__init__(depth=4)  # output stride 16
        b = base_channels
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, b, 7, stride=2, padding=3, bias=norm == "none"),
            make_norm(norm, b),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2, padding=1),
        )
        self.stage1 = _stage(b, b, 1, 1, norm)  # stride 4: the low-level features
        self.stage2 = _stage(b, 2 * b, 2, 1, norm)  # stride 8
        self.stage3 = _stage(2 * b, 4 * b, 2, 1, norm)  # stride 16
        self.stage4 = _stage(4 * b, 8 * b, 1, 2, norm)  # stride 16, atrous
        self.aspp = ASPP(8 * b, 4 * b, norm)
        low = max(8, 3 * b // 4)
        self.reduce_low = _conv_norm_relu(b, low, 1, norm)
        self.decoder = nn.Sequential(
            _conv_norm_relu(4 * b + low, 4 * b, 3, norm),
            _conv_norm_relu(4 * b, 4 * b, 3, norm),
        )
        self.classifier = nn.Conv2d(4 * b, num_classes, 1)

    def _forward_heads(self, x: torch.Tensor) -> list[torch.Tensor]:
        size = x.shape[-2:]
        low = self.stage1(self.stem(x))
        deep = self.aspp(self.stage4(self.stage3(self.stage2(low))))
        deep = F.interpolate(deep, size=low.shape[-2:], mode="bilinear", align_corners=False)
        logits = self.classifier(self.decoder(torch.cat([deep, self.reduce_low(low)], dim=1)))
        return [F.interpolate(logits, size=size, mode="bilinear", align_corners=False)]

"""FCN (Long, Shelhamer and Darrell 2015): fully convolutional VGG with summed skips.

The VGG-16 classifier becomes a segmenter: its fully connected layers fc6/fc7 turn
into a 7x7 and a 1x1 convolution, a 1x1 "score" layer gives class scores at 1/32 of
the input, and transposed convolutions (initialised to bilinear interpolation)
up-sample them back:

* FCN-32s: one 32x up-sampling of the fc7 scores;
* FCN-16s: 2x up-sample, **add** the scores of pool4 (1/16), then 16x;
* FCN-8s: as 16s, then 2x again and **add** the scores of pool3 (1/8), then 8x.

Departures from the paper, for training from scratch on small images: every
convolution of the backbone is followed by the chosen normalisation (the paper
fine-tuned ImageNet weights, and a plain 16-layer network from scratch barely trains
without it); widths scale with ``base_channels`` (64 = VGG-16, fc 4096); inputs are
padded to a multiple of 32 instead of the paper's 100-pixel padding and crop.
"""

from __future__ import annotations

import torch
from torch import nn

from napari_unetseg.core.models.blocks import SegmentationModel, make_norm

VGG16_STAGES = (2, 2, 3, 3, 3)  # convolutions per stage, each stage ends with a 2x max-pool
STRIDES = {"fcn32s": 32, "fcn16s": 16, "fcn8s": 8}


def _vgg_stage(in_channels: int, out_channels: int, n_convs: int, norm: str) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(n_convs):
        layers += [
            nn.Conv2d(
                in_channels if i == 0 else out_channels, out_channels, 3, padding=1, bias=norm == "none"
            ),
            make_norm(norm, out_channels),
            nn.ReLU(inplace=True),
        ]
    layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


def bilinear_upsampling(layer: nn.ConvTranspose2d) -> None:
    """Initialise a (channel-wise) transposed convolution to bilinear interpolation."""
    if layer.weight.is_meta:  # shapes only (parameter counting): nothing to fill
        return
    k = layer.kernel_size[0]
    factor = (k + 1) // 2
    center = factor - 1 if k % 2 == 1 else factor - 0.5
    og = torch.arange(k, dtype=torch.float32)
    filt1d = 1 - (og - center).abs() / factor
    filt = filt1d[:, None] * filt1d[None, :]
    with torch.no_grad():
        layer.weight.zero_()
        for c in range(min(layer.in_channels, layer.out_channels)):
            layer.weight[c, c] = filt
        if layer.bias is not None:
            layer.bias.zero_()


def _upsampler(channels: int, factor: int) -> nn.ConvTranspose2d:
    """Exact ``factor`` x up-sampling: kernel 2f, stride f, padding f/2, bilinear start."""
    layer = nn.ConvTranspose2d(channels, channels, 2 * factor, stride=factor, padding=factor // 2, bias=False)
    bilinear_upsampling(layer)
    return layer


class FCN(SegmentationModel):
    """FCN-32s, FCN-16s or FCN-8s on a VGG-16-style backbone.

    Parameters
    ----------
    in_channels, num_classes : int
        Input channels and output classes.
    variant : str
        ``fcn32s``, ``fcn16s`` or ``fcn8s`` (the stride of the finest score map fused).
    base_channels : int
        Width of the first stage (64 in VGG-16); stages use 1, 2, 4, 8, 8 times it and
        fc6/fc7 use 64 times it (4096 in VGG-16).
    norm : str
        See :func:`~napari_unetseg.core.models.blocks.make_norm`.
    dropout : float
        Dropout after fc6 and fc7 (0.5 in the paper).
    """

    class_layers = ("score_fr", "score_pool4", "score_pool3", "up_fr", "up_pool4", "up_final")

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        variant: str = "fcn8s",
        base_channels: int = 32,
        norm: str = "batch",
        dropout: float = 0.5,
    ) -> None:
        super().__init__(depth=5)
        if variant not in STRIDES:
            raise ValueError(f"unknown FCN variant {variant!r}; one of {', '.join(STRIDES)}")
        self.variant = variant
        widths = [base_channels * m for m in (1, 2, 4, 8, 8)]
        self.stages = nn.ModuleList()
        previous = in_channels
        for width, n_convs in zip(widths, VGG16_STAGES):
            self.stages.append(_vgg_stage(previous, width, n_convs, norm))
            previous = width
        fc = 64 * base_channels
        self.fc = nn.Sequential(  # fc6 and fc7 as convolutions
            nn.Conv2d(widths[4], fc, 7, padding=3),
            nn.ReLU(inplace=True),
            nn.Dropout2d(dropout),
            nn.Conv2d(fc, fc, 1),
            nn.ReLU(inplace=True),
            nn.Dropout2d(dropout),
        )
        self.score_fr = nn.Conv2d(fc, num_classes, 1)
        stride = STRIDES[variant]
        if stride <= 16:
            self.score_pool4 = nn.Conv2d(widths[3], num_classes, 1)
            self.up_fr = _upsampler(num_classes, 2)
        if stride == 8:
            self.score_pool3 = nn.Conv2d(widths[2], num_classes, 1)
            self.up_pool4 = _upsampler(num_classes, 2)
        self.up_final = _upsampler(num_classes, stride)
        # the paper zero-initialises the skip score layers: training starts from the coarser net
        for name in ("score_pool4", "score_pool3"):
            if hasattr(self, name):
                nn.init.zeros_(getattr(self, name).weight)
                nn.init.zeros_(getattr(self, name).bias)

    def _forward_heads(self, x: torch.Tensor) -> list[torch.Tensor]:
        pools = []
        for stage in self.stages:
            x = stage(x)
            pools.append(x)
        score = self.score_fr(self.fc(x))  # 1/32
        if self.variant in ("fcn16s", "fcn8s"):
            score = self.up_fr(score) + self.score_pool4(pools[3])  # 1/16, summed skip
        if self.variant == "fcn8s":
            score = self.up_pool4(score) + self.score_pool3(pools[2])  # 1/8, summed skip
        return [self.up_final(score)]

"""U-Net (Ronneberger et al. 2015): encoder-decoder with concatenated skips."""

from __future__ import annotations

import torch
from torch import nn

from napari_unetseg.core.models.blocks import ConvBlock, SegmentationModel, Upsample2x


class UNet(SegmentationModel):
    """2D U-Net with configurable depth, width, normalisation and up-sampling.

    Parameters
    ----------
    in_channels, num_classes : int
        Input channels and output classes.
    depth : int
        Number of 2x down-sampling steps.
    base_channels : int
        Channels of the first level; level ``i`` has ``base_channels * 2**i``.
    norm : str
        See :func:`~napari_unetseg.core.models.blocks.make_norm`.
    upsample : str
        ``bilinear`` or ``transpose``.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        depth: int = 4,
        base_channels: int = 32,
        norm: str = "batch",
        upsample: str = "bilinear",
    ) -> None:
        super().__init__(depth)
        widths = [base_channels * 2**i for i in range(depth + 1)]
        self.encoders = nn.ModuleList()
        previous = in_channels
        for width in widths:
            self.encoders.append(ConvBlock(previous, width, norm))
            previous = width
        self.pool = nn.MaxPool2d(2)
        self.ups = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for level in reversed(range(depth)):
            self.ups.append(Upsample2x(widths[level + 1], widths[level], upsample))
            self.decoders.append(ConvBlock(2 * widths[level], widths[level], norm))
        self.head = nn.Conv2d(widths[0], num_classes, 1)

    def _forward_heads(self, x: torch.Tensor) -> list[torch.Tensor]:
        skips = []
        for level, encoder in enumerate(self.encoders):
            x = encoder(x if level == 0 else self.pool(x))
            skips.append(x)
        x = skips.pop()
        for up, decoder in zip(self.ups, self.decoders):
            x = decoder(torch.cat([skips.pop(), up(x)], dim=1))
        return [self.head(x)]

"""U-Net (Ronneberger et al. 2015): encoder-decoder with concatenated skips.

The same class builds the 3D U-Net (Cicek et al. 2016) with ``spatial_dims=3``, with
anisotropic pooling for stacks whose z spacing is coarser than their pixel size.
"""

from __future__ import annotations

import torch
from torch import nn

from napari_unetseg.core.models.blocks import (
    ConvBlock,
    SegmentationModel,
    Upsample2x,
    conv_layer,
    max_pool,
    pool_sizes,
    total_pooling,
)


class UNet(SegmentationModel):
    """U-Net with configurable depth, width, normalisation and up-sampling, 2D or 3D.

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
        ``bilinear`` (trilinear in 3D) or ``transpose``.
    spatial_dims : int
        2 for images, 3 for volumes ``(Z, Y, X)``.
    anisotropy : float
        3D only: z spacing over pixel size; see
        :func:`~napari_unetseg.core.models.blocks.pool_sizes`.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        depth: int = 4,
        base_channels: int = 32,
        norm: str = "batch",
        upsample: str = "bilinear",
        spatial_dims: int = 2,
        anisotropy: float = 1.0,
    ) -> None:
        pools = pool_sizes(depth, spatial_dims, anisotropy)
        super().__init__(depth, total_pooling(pools, spatial_dims))
        self.pools = pools
        dims = spatial_dims
        widths = [base_channels * 2**i for i in range(depth + 1)]
        self.encoders = nn.ModuleList()
        previous = in_channels
        for width in widths:
            self.encoders.append(ConvBlock(previous, width, norm, dims))
            previous = width
        self.ups = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for level in reversed(range(depth)):
            self.ups.append(Upsample2x(widths[level + 1], widths[level], upsample, dims, self.pools[level]))
            self.decoders.append(ConvBlock(2 * widths[level], widths[level], norm, dims))
        self.head = conv_layer(dims)(widths[0], num_classes, 1)

    def _forward_heads(self, x: torch.Tensor) -> list[torch.Tensor]:
        skips = []
        for level, encoder in enumerate(self.encoders):
            x = encoder(x if level == 0 else max_pool(x, self.pools[level - 1]))
            skips.append(x)
        x = skips.pop()
        for up, decoder in zip(self.ups, self.decoders):
            x = decoder(torch.cat([skips.pop(), up(x)], dim=1))
        return [self.head(x)]

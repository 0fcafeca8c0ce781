"""UNet++ (Zhou et al. 2018): nested, densely connected skip pathways.

Node ``X(i, j)`` sits at resolution level ``i`` after ``j`` convolution units on its
skip pathway: ``X(i, 0)`` is the encoder, and for ``j >= 1``

    X(i, j) = ConvBlock(concat(X(i, 0), ..., X(i, j-1), up(X(i+1, j-1))))

With deep supervision every ``X(0, j)`` gets a 1x1 head and a loss. At inference the
network can be *pruned*: head ``L`` needs only the nodes with ``i + j <= L``, so the
deeper levels are never computed. With ``spatial_dims=3`` the same class builds the
3D UNet++, with anisotropic pooling as the 3D U-Net.
"""

from __future__ import annotations

import torch
from torch import nn

from napari_unetseg.core.models.blocks import (
    ConvBlock,
    SegmentationModel,
    conv_layer,
    max_pool,
    pool_sizes,
    total_pooling,
    upsample,
)


class UNetPlusPlus(SegmentationModel):
    """UNet++ (2D or 3D) with optional deep supervision and pruned inference.

    Parameters
    ----------
    in_channels, num_classes, depth, base_channels, norm
        As for :class:`~napari_unetseg.core.models.unet.UNet`.
    deep_supervision : bool
        Train a head on every ``X(0, j)``; :meth:`forward_heads` then returns all of
        them (shallowest first).
    head : int or None
        Prediction head ``1..depth`` (needs deep supervision for ``head < depth``);
        ``None`` = the deepest head. The network is built pruned: the nodes that head
        does not need are not created (a pruned model file holds only its weights).
        Setting :attr:`head` lower on a built network prunes it at run time.
    spatial_dims, anisotropy
        As for :class:`~napari_unetseg.core.models.unet.UNet`.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        depth: int = 4,
        base_channels: int = 32,
        norm: str = "batch",
        deep_supervision: bool = True,
        head: int | None = None,
        spatial_dims: int = 2,
        anisotropy: float = 1.0,
    ) -> None:
        pools = pool_sizes(depth, spatial_dims, anisotropy)
        super().__init__(depth, total_pooling(pools, spatial_dims))
        self.pools = pools
        dims = spatial_dims
        if head is not None and head != depth and not deep_supervision:
            raise ValueError("pruned inference (head < depth) needs deep_supervision=True")
        self.deep_supervision = deep_supervision
        self.head = depth if head is None else head
        widths = [base_channels * 2**i for i in range(depth + 1)]
        self.nodes = nn.ModuleDict()  # only the nodes X(i, j) with i + j <= head
        for i in range(self.head + 1):
            self.nodes[f"{i}_0"] = ConvBlock(in_channels if i == 0 else widths[i - 1], widths[i], norm, dims)
        for j in range(1, self.head + 1):
            for i in range(self.head + 1 - j):
                in_ch = j * widths[i] + widths[i + 1]
                self.nodes[f"{i}_{j}"] = ConvBlock(in_ch, widths[i], norm, dims)
        n_heads = self.head if deep_supervision else 1
        self.heads = nn.ModuleList(conv_layer(dims)(widths[0], num_classes, 1) for _ in range(n_heads))

    def _nodes_up_to(self, x: torch.Tensor, level: int) -> dict[tuple[int, int], torch.Tensor]:
        """Compute every node ``X(i, j)`` with ``i + j <= level``."""
        out: dict[tuple[int, int], torch.Tensor] = {}
        for i in range(level + 1):
            x = self.nodes[f"{i}_0"](x if i == 0 else max_pool(x, self.pools[i - 1]))
            out[i, 0] = x
        for j in range(1, level + 1):
            for i in range(level + 1 - j):
                below = out[i + 1, j - 1]
                up = upsample(below, self.pools[i])
                same_level = [out[i, k] for k in range(j)]
                out[i, j] = self.nodes[f"{i}_{j}"](torch.cat([*same_level, up], dim=1))
        return out

    def _forward_heads(self, x: torch.Tensor) -> list[torch.Tensor]:
        nodes = self._nodes_up_to(x, self.head)
        if self.training and self.deep_supervision:
            return [self.heads[j](nodes[0, j + 1]) for j in range(self.head)]
        head = self.heads[self.head - 1] if self.deep_supervision else self.heads[0]
        return [head(nodes[0, self.head])]

    def all_heads(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Logits of heads L1..L{head} in one pass (needs deep supervision)."""
        if not self.deep_supervision:
            raise ValueError("all_heads needs deep_supervision=True")
        x, crop = self._padded(x)
        nodes = self._nodes_up_to(x, self.head)
        return [self.heads[j](nodes[0, j + 1])[crop] for j in range(self.head)]

"""Building blocks shared by the segmentation networks (2D, and 3D for U-Net/UNet++)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def conv_layer(dims: int) -> type[nn.Module]:
    """``nn.Conv2d`` or ``nn.Conv3d``."""
    return {2: nn.Conv2d, 3: nn.Conv3d}[dims]


def make_norm(kind: str, channels: int, dims: int = 2) -> nn.Module:
    """Normalisation layer by name: ``batch``, ``instance``, ``group`` or ``none``."""
    if kind == "batch":
        return {2: nn.BatchNorm2d, 3: nn.BatchNorm3d}[dims](channels)
    if kind == "instance":
        return {2: nn.InstanceNorm2d, 3: nn.InstanceNorm3d}[dims](channels, affine=True)
    if kind == "group":
        return nn.GroupNorm(min(8, channels), channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {kind!r}")


class ConvBlock(nn.Sequential):
    """Two 3x3 (3x3x3) convolutions, each followed by normalisation and ReLU (the U-Net unit)."""

    def __init__(self, in_channels: int, out_channels: int, norm: str = "batch", dims: int = 2) -> None:
        bias = norm == "none"
        conv = conv_layer(dims)
        super().__init__(
            conv(in_channels, out_channels, 3, padding=1, bias=bias),
            make_norm(norm, out_channels, dims),
            nn.ReLU(inplace=True),
            conv(out_channels, out_channels, 3, padding=1, bias=bias),
            make_norm(norm, out_channels, dims),
            nn.ReLU(inplace=True),
        )


def upsample(x: torch.Tensor, factor: int | tuple[int, ...] = 2) -> torch.Tensor:
    """(Bi/tri)linear up-sampling by ``factor`` (one per spatial axis, or one for all)."""
    mode = "bilinear" if x.ndim == 4 else "trilinear"
    if isinstance(factor, tuple):
        factor = tuple(float(f) for f in factor)
    return F.interpolate(x, scale_factor=factor, mode=mode, align_corners=False)


class Upsample2x(nn.Module):
    """2x up-sampling: (bi/tri)linear followed by a 1x1 conv, or a learned transposed conv.

    ``factor`` is 2, or in 3D a per-axis tuple such as ``(1, 2, 2)`` (no up-sampling
    along z where the encoder did not pool along z).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        mode: str = "bilinear",
        dims: int = 2,
        factor: int | tuple[int, ...] = 2,
    ) -> None:
        super().__init__()
        self.mode = mode
        self.factor = factor
        if mode == "transpose":
            transposed = {2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}[dims]
            self.op = transposed(in_channels, out_channels, factor, stride=factor)
        elif mode == "bilinear":
            self.op = conv_layer(dims)(in_channels, out_channels, 1)
        else:
            raise ValueError(f"unknown upsample mode {mode!r}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "bilinear":
            x = upsample(x, self.factor)
        return self.op(x)


class SegmentationModel(nn.Module):
    """Base class: pads any input to a multiple of ``2**depth`` and crops the output.

    Subclasses implement :meth:`_forward_heads`, returning a list of logit maps (one
    per supervised head, the one used for prediction last), and name in
    :attr:`class_layers` the sub-modules whose weights belong to particular classes
    (re-initialised when fine-tuning on other classes).
    """

    class_layers: tuple[str, ...] = ("head", "heads")

    def __init__(self, depth: int, multiples: tuple[int, ...] | None = None) -> None:
        super().__init__()
        self.depth = depth
        self.multiples = multiples or (2**depth, 2**depth)

    @property
    def spatial_dims(self) -> int:
        """2 for networks over (Y, X) images, 3 for networks over (Z, Y, X) volumes."""
        return len(self.multiples)

    def _forward_heads(self, x: torch.Tensor) -> list[torch.Tensor]:
        raise NotImplementedError

    def _padded(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[slice, ...]]:
        """``x`` padded at the far end of each spatial axis to its multiple, and the crop back."""
        sizes = x.shape[2:]
        pads = [(-size) % m for size, m in zip(sizes, self.multiples)]
        crop = (..., *(slice(0, size) for size in sizes))
        if any(pads):
            mode = "reflect" if all(p < size for p, size in zip(pads, sizes)) else "replicate"
            flat = [v for p in reversed(pads) for v in (0, p)]  # F.pad lists the last axis first
            x = F.pad(x, flat, mode=mode)
        return x, crop

    def forward_heads(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Logits of every supervised head, each (B, K, *spatial) at the input size."""
        x, crop = self._padded(x)
        return [out[crop] for out in self._forward_heads(x)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (B, K, *spatial) of the prediction head, for any input size."""
        return self.forward_heads(x)[-1]


def pool_sizes(depth: int, dims: int = 2, anisotropy: float = 1.0) -> list[tuple[int, ...]]:
    """The down-sampling factor per axis at each of the ``depth`` levels.

    2D: ``(2, 2)`` everywhere. 3D with voxels ``anisotropy`` times deeper (z) than
    wide: z is pooled at a level only once its spacing is less than twice that of y/x
    there (nnU-Net's rule), so a stack with z steps 4x the pixel size keeps all its
    slices for two levels: ``(1, 2, 2), (1, 2, 2), (2, 2, 2), (2, 2, 2)``.
    """
    if dims == 2:
        return [(2, 2)] * depth
    sizes, z, xy = [], float(anisotropy), 1.0
    for _ in range(depth):
        pool_z = 2 if z < 2 * xy else 1
        sizes.append((pool_z, 2, 2))
        z, xy = z * pool_z, xy * 2
    return sizes


def total_pooling(sizes: list[tuple[int, ...]], dims: int = 2) -> tuple[int, ...]:
    """The product of the per-level factors: what each axis must be a multiple of."""
    out = [1] * dims
    for level in sizes:
        out = [a * b for a, b in zip(out, level)]
    return tuple(out)


def max_pool(x: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
    """2D or 3D max-pooling by ``size`` (one factor per spatial axis)."""
    return (F.max_pool2d if x.ndim == 4 else F.max_pool3d)(x, size, size)

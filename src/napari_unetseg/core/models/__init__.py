"""Model registry: name -> constructor, and :func:`build_model` from a :class:`ModelSpec`."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from napari_unetseg.core.config import ModelSpec
from napari_unetseg.core.models.blocks import SegmentationModel
from napari_unetseg.core.models.deeplab import DeepLabV3Plus
from napari_unetseg.core.models.fcn import FCN
from napari_unetseg.core.models.unet import UNet
from napari_unetseg.core.models.unet3plus import UNet3Plus
from napari_unetseg.core.models.unetplusplus import UNetPlusPlus


@dataclass(frozen=True)
class ModelEntry:
    """One registered architecture: its network class and the keyword arguments a
    :class:`ModelSpec` gives it (``arguments(spec)``: plain values, as a bioimage.io
    architecture description holds them).

    ``options`` names the :class:`ModelSpec` fields beyond channels and classes that
    the architecture uses; the others are ignored (FCN and DeepLab v3+ have a fixed
    depth, for instance).
    """

    network: type[SegmentationModel]
    arguments: Callable[[ModelSpec], dict[str, Any]]
    description: str
    options: tuple[str, ...] = ("base_channels", "norm")
    spatial_dims: int = 2

    def build(self, spec: ModelSpec) -> SegmentationModel:
        return self.network(**self.arguments(spec))


def _unet(dims: int) -> Callable[[ModelSpec], dict[str, Any]]:
    def arguments(spec: ModelSpec) -> dict[str, Any]:
        return {
            "in_channels": spec.in_channels, "num_classes": spec.num_classes, "depth": spec.depth,
            "base_channels": spec.base_channels, "norm": spec.norm, "upsample": spec.upsample,
            "spatial_dims": dims, "anisotropy": spec.anisotropy,
        }  # fmt: skip

    return arguments


def _unetplusplus(dims: int) -> Callable[[ModelSpec], dict[str, Any]]:
    def arguments(spec: ModelSpec) -> dict[str, Any]:
        return {
            "in_channels": spec.in_channels, "num_classes": spec.num_classes, "depth": spec.depth,
            "base_channels": spec.base_channels, "norm": spec.norm, "deep_supervision": spec.deep_supervision,
            "head": spec.head, "spatial_dims": dims, "anisotropy": spec.anisotropy,
        }  # fmt: skip

    return arguments


def _unet3plus(spec: ModelSpec) -> dict[str, Any]:
    return {
        "in_channels": spec.in_channels, "num_classes": spec.num_classes, "depth": spec.depth,
        "base_channels": spec.base_channels, "norm": spec.norm, "deep_supervision": spec.deep_supervision,
    }  # fmt: skip


def _fcn(variant: str) -> Callable[[ModelSpec], dict[str, Any]]:
    def arguments(spec: ModelSpec) -> dict[str, Any]:
        return {"in_channels": spec.in_channels, "num_classes": spec.num_classes, "variant": variant,
                "base_channels": spec.base_channels, "norm": spec.norm}  # fmt: skip

    return arguments


def _deeplab(spec: ModelSpec) -> dict[str, Any]:
    return {"in_channels": spec.in_channels, "num_classes": spec.num_classes,
            "base_channels": spec.base_channels, "norm": spec.norm}  # fmt: skip


MODELS: dict[str, ModelEntry] = {
    "unet": ModelEntry(
        UNet, _unet(2), "U-Net: encoder-decoder with concatenated skips (2015)",
        ("depth", "base_channels", "norm", "upsample"),
    ),
    "unetplusplus": ModelEntry(
        UNetPlusPlus, _unetplusplus(2),
        "UNet++: nested dense skips, deep supervision, prunable heads L1..L4 (2018)",
        ("depth", "base_channels", "norm", "deep_supervision", "head"),
    ),
    "unet3plus": ModelEntry(
        UNet3Plus, _unet3plus, "UNet 3+: full-scale skips and full-scale deep supervision (2020)",
        ("depth", "base_channels", "norm", "deep_supervision"),
    ),
    "fcn8s": ModelEntry(
        FCN, _fcn("fcn8s"), "FCN-8s: VGG-16 fully convolutional, pool3+pool4 scores summed (2015)"
    ),
    "fcn16s": ModelEntry(
        FCN, _fcn("fcn16s"), "FCN-16s: VGG-16 fully convolutional, pool4 scores summed (2015)"
    ),
    "fcn32s": ModelEntry(
        FCN, _fcn("fcn32s"), "FCN-32s: VGG-16 fully convolutional, one 32x up-sampling (2015)"
    ),
    "deeplabv3plus": ModelEntry(
        DeepLabV3Plus, _deeplab,
        "DeepLab v3+: atrous ResNet-18 encoder (stride 16), ASPP 6/12/18, decoder (2018)",
    ),
    "unet3d": ModelEntry(
        UNet, _unet(3), "3D U-Net: volumes (Z, Y, X), anisotropic pooling for coarse z steps (2016)",
        ("depth", "base_channels", "norm", "upsample", "anisotropy"), spatial_dims=3,
    ),
    "unetplusplus3d": ModelEntry(
        UNetPlusPlus, _unetplusplus(3),
        "3D UNet++: volumes (Z, Y, X), nested skips, deep supervision, anisotropic pooling",
        ("depth", "base_channels", "norm", "deep_supervision", "head", "anisotropy"), spatial_dims=3,
    ),
}  # fmt: skip


def available_models() -> dict[str, str]:
    """Registered model names and their one-line descriptions."""
    return {name: entry.description for name, entry in MODELS.items()}


def build_model(spec: ModelSpec) -> SegmentationModel:
    """Build the network described by ``spec``.

    Raises
    ------
    KeyError
        If ``spec.name`` is not registered; the message lists the available names.
    """
    if spec.name not in MODELS:
        raise KeyError(f"unknown model {spec.name!r}; available: {', '.join(MODELS)}")
    return MODELS[spec.name].build(spec)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@functools.lru_cache(maxsize=256)
def parameter_count(spec: ModelSpec) -> int:
    """Trainable parameters of the network ``spec`` describes, without allocating it
    (built on PyTorch's ``meta`` device: shapes only, no memory). Remembered per spec:
    building a network still takes a few tens of ms, and the Train dock's model list asks
    for every architecture each time napari's layers change."""
    with torch.device("meta"):
        return count_parameters(build_model(spec))

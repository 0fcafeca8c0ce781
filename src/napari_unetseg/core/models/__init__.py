"""Model registry: name -> constructor, and :func:`build_model` from a :class:`ModelSpec`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from napari_unetseg.core.config import ModelSpec
from napari_unetseg.core.models.blocks import SegmentationModel
from napari_unetseg.core.models.unet import UNet
from napari_unetseg.core.models.unetplusplus import UNetPlusPlus


@dataclass(frozen=True)
class ModelEntry:
    """One registered architecture."""

    build: Callable[[ModelSpec], SegmentationModel]
    description: str


def _build_unet(spec: ModelSpec) -> UNet:
    return UNet(
        spec.in_channels,
        spec.num_classes,
        depth=spec.depth,
        base_channels=spec.base_channels,
        norm=spec.norm,
        upsample=spec.upsample,
    )


def _build_unetplusplus(spec: ModelSpec) -> UNetPlusPlus:
    return UNetPlusPlus(
        spec.in_channels,
        spec.num_classes,
        depth=spec.depth,
        base_channels=spec.base_channels,
        norm=spec.norm,
        deep_supervision=spec.deep_supervision,
        head=spec.head,
    )


MODELS: dict[str, ModelEntry] = {
    "unet": ModelEntry(_build_unet, "U-Net: encoder-decoder with concatenated skips (2015)"),
    "unetplusplus": ModelEntry(
        _build_unetplusplus,
        "UNet++: nested dense skips, deep supervision, prunable heads L1..L4 (2018)",
    ),
}


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

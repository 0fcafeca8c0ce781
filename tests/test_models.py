"""One shared test class run over every registered model."""

from __future__ import annotations

import pytest
import torch

from napari_unetseg.core.checkpoint import LoadedModel, load_model, save_model
from napari_unetseg.core.config import ModelSpec
from napari_unetseg.core.errors import UserInputError
from napari_unetseg.core.losses import segmentation_loss
from napari_unetseg.core.models import (
    MODELS,
    available_models,
    build_model,
    count_parameters,
    parameter_count,
)


def spatial(name: str, hw: tuple[int, int], z: int = 5) -> tuple[int, ...]:
    """The input size for a model: ``hw`` for 2D ones, ``(z, *hw)`` for 3D ones."""
    return (z, *hw) if MODELS[name].spatial_dims == 3 else hw


@pytest.mark.parametrize("name", sorted(MODELS))
class TestEveryModel:
    def spec(self, name, **kw):
        if MODELS[name].spatial_dims == 3:
            kw.setdefault("anisotropy", 2.0)  # pools z from the second level
        return ModelSpec(name=name, depth=3, base_channels=8, **kw)

    @pytest.mark.parametrize("in_ch,classes", [(1, 2), (3, 5)])
    @pytest.mark.parametrize("hw", [(37, 51), (64, 64), (100, 33)])
    def test_output_shape_any_size(self, name, in_ch, classes, hw):
        model = build_model(self.spec(name, in_channels=in_ch, num_classes=classes)).eval()
        size = spatial(name, hw if MODELS[name].spatial_dims == 2 else (hw[0] // 2, hw[1] // 2))
        out = model(torch.randn(2, in_ch, *size))
        assert out.shape == (2, classes, *size)
        assert torch.isfinite(out).all()

    def test_gradients_reach_first_layer(self, name):
        model = build_model(self.spec(name)).train()
        heads = model.forward_heads(torch.randn(2, 1, *spatial(name, (40, 40))))
        sum(h.square().mean() for h in heads).backward()
        first = next(p for p in model.parameters() if p.ndim >= 4)
        assert first.grad is not None and first.grad.abs().sum() > 0

    def test_trains_loss_goes_down(self, name):
        torch.manual_seed(0)
        model = build_model(self.spec(name)).train()
        # smooth blobs: learnable by the coarse-output models (FCN, DeepLab) too
        if MODELS[name].spatial_dims == 3:
            blobs = torch.nn.functional.interpolate(
                torch.randn(2, 1, 2, 3, 3), size=(8, 48, 48), mode="trilinear"
            )
        else:
            blobs = torch.nn.functional.interpolate(torch.randn(4, 1, 3, 3), size=96, mode="bilinear")
        x = blobs + 0.1 * torch.randn_like(blobs)
        y = (blobs[:, 0] > 0.3).long()
        opt = torch.optim.Adam(model.parameters(), lr=3e-3)
        losses = []
        for _ in range(20):
            loss = sum(segmentation_loss(h, y) for h in model.forward_heads(x))
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        assert min(losses[-3:]) < 0.6 * losses[0]

    def test_save_load_roundtrip(self, name, tmp_path):
        model = build_model(self.spec(name)).eval()
        loaded = LoadedModel(model, self.spec(name), (1, 2))
        path = save_model(loaded, tmp_path / "m.pt")
        again = load_model(path)
        x = torch.randn(1, 1, *spatial(name, (48, 48)))
        with torch.no_grad():
            assert torch.allclose(model(x), again.model(x))
        assert again.class_values == (1, 2) and again.spec == loaded.spec

    def test_class_layers_are_the_ones_that_depend_on_the_classes(self, name):
        """Fine-tuning on other classes re-initialises exactly ``class_layers``."""
        two = build_model(self.spec(name, num_classes=2)).state_dict()
        five = build_model(self.spec(name, num_classes=5)).state_dict()
        prefixes = tuple(f"{layer}." for layer in build_model(self.spec(name)).class_layers)
        differ = {k for k in two if two[k].shape != five[k].shape}
        assert differ and all(k.startswith(prefixes) for k in differ)

    def test_parameter_count_without_building(self, name):
        spec = self.spec(name, in_channels=3, num_classes=4)
        assert parameter_count(spec) == count_parameters(build_model(spec)) > 0


def test_unknown_model_lists_names():
    with pytest.raises(KeyError, match="unet, unetplusplus, unet3plus, fcn8s"):
        build_model(ModelSpec(name="nope"))


def test_registry_descriptions():
    assert set(available_models()) == {
        "unet", "unetplusplus", "unet3plus", "fcn8s", "fcn16s", "fcn32s", "deeplabv3plus",
        "unet3d", "unetplusplus3d",
    }  # fmt: skip
    assert all(len(d) > 20 for d in available_models().values())
    assert count_parameters(build_model(ModelSpec())) > 1_000_000


@pytest.mark.parametrize("upsample", ["bilinear", "transpose"])
@pytest.mark.parametrize("norm", ["batch", "instance", "group", "none"])
def test_unet_options(norm, upsample):
    model = build_model(ModelSpec(depth=2, base_channels=8, norm=norm, upsample=upsample)).eval()
    assert model(torch.randn(1, 1, 30, 30)).shape == (1, 2, 30, 30)


def test_unetplusplus_deep_supervision_and_pruning():
    spec = ModelSpec(name="unetplusplus", depth=4, base_channels=8)
    model = build_model(spec)
    x = torch.randn(1, 1, 64, 64)
    model.train()
    assert len(model.forward_heads(x)) == 4  # a loss on every head
    model.eval()
    with torch.no_grad():
        full = model.all_heads(x)
        for level in range(1, 5):
            model.head = level
            assert torch.equal(model(x), full[level - 1])  # pruned = that head of the full net
    # head 1 runs only nodes with i + j <= 1: far fewer operations
    pruned = build_model(spec.replace(head=1)).eval()
    assert pruned.head == 1


def test_spec_validation():
    with pytest.raises(UserInputError, match="head"):
        ModelSpec(name="unetplusplus", depth=3, head=4)
    with pytest.raises(UserInputError, match="norm"):
        ModelSpec(norm="layer")

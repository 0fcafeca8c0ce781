"""What makes each seed architecture itself: FCN skips, UNet 3+ full-scale skips,
DeepLab v3+ atrous stride and ASPP, UNet++ pruning."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from napari_unetseg.core.checkpoint import LoadedModel, load_model, pruned, save_model
from napari_unetseg.core.config import ModelSpec
from napari_unetseg.core.errors import UserInputError
from napari_unetseg.core.models import build_model, count_parameters
from napari_unetseg.core.models.fcn import bilinear_upsampling


@pytest.mark.parametrize("factor", [2, 8, 32])
def test_fcn_upsampling_starts_as_bilinear_interpolation(factor):
    layer = torch.nn.ConvTranspose2d(3, 3, 2 * factor, stride=factor, padding=factor // 2, bias=False)
    bilinear_upsampling(layer)
    x = torch.randn(1, 3, 6, 7)
    with torch.no_grad():
        ours = layer(x)
    reference = F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)
    assert ours.shape == reference.shape
    inner = (..., slice(factor, -factor), slice(factor, -factor))  # borders: zero vs replicate
    assert torch.allclose(ours[inner], reference[inner], atol=1e-5)


@pytest.mark.parametrize(
    "variant,skips",
    [("fcn32s", set()), ("fcn16s", {"score_pool4"}), ("fcn8s", {"score_pool3", "score_pool4"})],
)
def test_fcn_variants_sum_the_pool_scores_they_name(variant, skips):
    model = build_model(ModelSpec(name=variant, base_channels=4)).train()
    present = {name for name in ("score_pool3", "score_pool4") if hasattr(model, name)}
    assert present == skips
    # zero-initialised like the paper, yet they learn: the sum passes gradients to them
    model(torch.randn(2, 1, 64, 64)).square().mean().backward()
    for name in skips:
        layer = getattr(model, name)
        assert not layer.weight.any() and layer.weight.grad.abs().sum() > 0
    stages = [m for m in model.stages]
    assert [sum(isinstance(x, torch.nn.Conv2d) for x in s) for s in stages] == [2, 2, 3, 3, 3]  # VGG-16
    assert model.fc[0].kernel_size == (7, 7)  # fc6 as a 7x7 convolution


def test_unet3plus_fuses_every_scale_and_supervises_each():
    depth, base = 4, 4
    model = build_model(ModelSpec(name="unet3plus", depth=depth, base_channels=base))
    assert all(len(branches) == depth + 1 for branches in model.branches)
    assert all(fuse[0].in_channels == base * (depth + 1) for fuse in model.fuse)
    x = torch.randn(1, 1, 48, 48, requires_grad=True)
    model.train()
    heads = model.forward_heads(x)
    assert len(heads) == depth + 1 and all(h.shape == (1, 2, 48, 48) for h in heads)
    model.eval()
    assert len(model.forward_heads(x)) == 1
    # the finest decoder stage sees the bottleneck directly (not only through coarser stages)
    seen = []
    hook = model.branches[0][depth].register_forward_hook(lambda m, i, o: seen.append(i[0].shape))
    model(x)
    hook.remove()
    assert seen == [(1, base * 2**depth, 48, 48)]  # bottleneck up-sampled 16x to level 0


def test_deeplab_output_stride_16_atrous_rates_and_batch_of_one():
    model = build_model(ModelSpec(name="deeplabv3plus", base_channels=8))
    seen = []
    model.aspp.register_forward_hook(lambda m, i, o: seen.append(i[0].shape[-2:]))
    model.train()
    out = model(torch.randn(1, 1, 128, 96))  # a batch of one trains: no batch norm on the pooled map
    assert out.shape == (1, 2, 128, 96) and seen == [(8, 6)]
    rates = [b[0].dilation[0] for b in model.aspp.branches]
    assert rates == [1, 6, 12, 18]
    assert all(block.body[0].dilation == (2, 2) for block in model.stage4)


def _unetpp_loaded(depth=4, base=4, deep_supervision=True):
    spec = ModelSpec(name="unetplusplus", depth=depth, base_channels=base, deep_supervision=deep_supervision)
    torch.manual_seed(0)
    return LoadedModel(build_model(spec).eval(), spec, (1, 2))


def test_pruned_unetplusplus_equals_that_head_of_the_full_network(tmp_path):
    loaded = _unetpp_loaded()
    x = torch.randn(1, 1, 40, 56)
    with torch.no_grad():
        full = loaded.model.all_heads(x)
    sizes = []
    for head in (1, 2, 3, 4):
        small = pruned(loaded, head)
        sizes.append(count_parameters(small.model))
        path = save_model(small, tmp_path / f"L{head}.pt")
        again = load_model(path)  # the model file remembers the head
        assert again.spec.head == head
        with torch.no_grad():
            assert torch.allclose(again.model(x), full[head - 1], atol=1e-6)
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1] / 10
    assert sizes[-1] == count_parameters(loaded.model)


def test_pruning_refuses_what_it_cannot_do():
    unet = ModelSpec(depth=2, base_channels=4)
    with pytest.raises(UserInputError, match="only UNet\\+\\+"):
        pruned(LoadedModel(build_model(unet), unet, (1, 2)), 1)
    with pytest.raises(UserInputError, match="without deep supervision"):
        pruned(_unetpp_loaded(deep_supervision=False), 2)
    with pytest.raises(UserInputError, match="already pruned"):
        pruned(pruned(_unetpp_loaded(), 2), 3)

"""Student backbones (dilated ResNets) and segmentation heads: shapes, strides, exact dilation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from src.errors import UserError
from src.student.backbones import build_backbone, imagenet_weights_file
from src.student.decoders import DeepLabV2Head, DeepLabV3PlusHead, PSPHead, build_head


@pytest.mark.parametrize(
    ("depth", "channels", "low"), [(18, 512, 64), (34, 512, 64), (50, 2048, 256)]
)
def test_backbone_output_stride_8_and_channels(depth: int, channels: int, low: int) -> None:
    net = build_backbone(depth=depth, weights="none", output_stride=8)
    assert (net.out_channels, net.low_level_channels) == (channels, low)
    feats = net(torch.randn(1, 3, 64, 48))
    assert feats["out"].shape == (1, channels, 8, 6)
    assert feats["low"].shape == (1, low, 16, 12)
    os16 = build_backbone(depth=depth, weights="none", output_stride=16)
    assert os16(torch.randn(1, 3, 64, 64))["out"].shape == (1, channels, 4, 4)


@pytest.mark.parametrize(
    ("depth", "stages", "channels"), [(18, 2, 128), (18, 3, 256), (50, 2, 512)]
)
def test_shallow_trunk_is_the_full_trunks_first_stages(
    depth: int, stages: int, channels: int
) -> None:
    torch.manual_seed(0)
    full = build_backbone(depth=depth, weights="none", output_stride=8).eval()
    shallow = build_backbone(depth=depth, weights="none", output_stride=8, num_stages=stages)
    assert shallow.out_channels == channels and shallow.output_stride == 8
    missing, unexpected = shallow.load_state_dict(full.state_dict(), strict=False)
    assert not missing and all(k.startswith(("layer3", "layer4")[stages - 2 :]) for k in unexpected)
    x = torch.randn(1, 3, 64, 48)
    expected = full.layer2(full.layer1(full.stem(x)))
    if stages == 3:
        expected = full.layer3(expected)
    with torch.no_grad():
        torch.testing.assert_close(shallow.eval()(x)["out"], expected.detach())
    assert expected.shape[-2:] == (8, 6)  # output stride 8 either way
    with pytest.raises(UserError, match="num_stages"):
        build_backbone(depth=18, weights="none", num_stages=1)


@pytest.mark.parametrize("depth", [18, 50])
def test_dilated_trunk_equals_strided_trunk_on_the_subsampled_grid(depth: int) -> None:
    """A trous: the OS-8 network with the OS-32 weights gives the OS-32 features at ::4."""
    strided = build_backbone(depth=depth, weights="none", output_stride=32).eval()
    dilated = build_backbone(depth=depth, weights="none", output_stride=8).eval()
    dilated.load_state_dict(strided.state_dict())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        a, b = strided(x)["out"], dilated(x)["out"]
    assert a.shape[-2:] == (2, 2) and b.shape[-2:] == (8, 8)
    torch.testing.assert_close(b[..., ::4, ::4], a, rtol=1e-4, atol=1e-4 * a.abs().max().item())


def test_basic_block_dilation_pattern() -> None:
    net = build_backbone(depth=18, weights="none", output_stride=8)
    dil = [(b.conv1.dilation[0], b.conv2.dilation[0]) for b in (*net.layer3, *net.layer4)]
    assert dil == [(1, 2), (2, 2), (2, 4), (4, 4)]
    assert all(m.stride == (1, 1) for m in net.layer4.modules() if isinstance(m, nn.Conv2d))


def test_backbone_weights_from_a_local_file(tmp_path) -> None:
    src = build_backbone(depth=18, weights="none")
    path = tmp_path / "r18.pth"
    torch.save({f"fc.{k}": v for k, v in nn.Linear(512, 10).state_dict().items()}
               | {k: v for k, v in _torchvision_keys(src).items()}, path)  # fmt: skip
    net = build_backbone(depth=18, weights=str(path))
    torch.testing.assert_close(net.stem[0].weight, src.stem[0].weight)
    with pytest.raises(UserError, match="do not fit ResNet-50"):
        build_backbone(depth=50, weights=str(path))
    with pytest.raises(UserError, match="does not exist"):
        build_backbone(depth=18, weights=str(tmp_path / "missing.pth"))


def _torchvision_keys(net: nn.Module) -> dict[str, torch.Tensor]:
    """Backbone keys renamed to torchvision's (stem.0 -> conv1, stem.1 -> bn1)."""
    out = {}
    for key, value in net.state_dict().items():
        key = key.replace("stem.0.", "conv1.").replace("stem.1.", "bn1.")
        out[key] = value
    return out


def test_imagenet_weights_missing_offline_names_file_and_cache(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    expected = imagenet_weights_file(101)
    assert expected == tmp_path / "hub" / "checkpoints" / "resnet101-63fe2227.pth"
    with pytest.raises(UserError) as err:
        build_backbone(depth=101, weights="imagenet")
    assert "resnet101-63fe2227.pth" in str(err.value) and str(expected.parent) in str(err.value)


def test_bad_backbone_arguments() -> None:
    with pytest.raises(UserError, match="depth"):
        build_backbone(depth=42, weights="none")
    with pytest.raises(UserError, match="output_stride"):
        build_backbone(depth=18, weights="none", output_stride=4)
    with pytest.raises(UserError, match="head"):
        build_head(name="fcn", in_channels=8, low_level_channels=8, embed_dim=4)


def test_deeplabv2_head_is_the_sum_of_four_dilated_convs() -> None:
    head = DeepLabV2Head(in_channels=16, embed_dim=8)
    assert [c.dilation[0] for c in head.branches] == [6, 12, 18, 24]
    x = torch.randn(2, 16, 9, 7)
    expected = sum(
        nn.functional.conv2d(x, c.weight, c.bias, padding=c.padding, dilation=c.dilation)
        for c in head.branches
    )
    out = head({"out": x, "low": torch.randn(2, 4, 36, 28)})
    assert out.shape == (2, 8, 9, 7)
    torch.testing.assert_close(out, expected)


def test_deeplabv3plus_head_shapes_and_separable_aspp() -> None:
    head = DeepLabV3PlusHead(in_channels=32, low_level_channels=24, embed_dim=8, channels=16)
    out = head({"out": torch.randn(2, 32, 8, 8), "low": torch.randn(2, 24, 32, 32)})
    assert out.shape == (2, 8, 32, 32)  # at the low-level (stride 4) resolution
    depthwise = [m for m in head.aspp.modules() if isinstance(m, nn.Conv2d) and m.groups > 1]
    assert sorted(m.dilation[0] for m in depthwise) == [12, 24, 36]
    assert head.skip[0].out_channels == 48


def test_psp_head_shapes() -> None:
    head = PSPHead(in_channels=32, embed_dim=8, channels=16)
    assert [s[0].output_size for s in head.pyramid.stages] == [1, 2, 3, 6]
    assert head({"out": torch.randn(2, 32, 12, 10)}).shape == (2, 8, 12, 10)


def test_deeplabv2_rates_are_configurable_and_checked() -> None:
    head = build_head(
        name="deeplabv2", in_channels=8, low_level_channels=4, embed_dim=6, dilations=[1, 2]
    )
    assert [conv.dilation for conv in head.branches] == [(1, 1), (2, 2)]
    default = build_head(name="deeplabv2", in_channels=8, low_level_channels=4, embed_dim=6)
    assert [conv.dilation[0] for conv in default.branches] == [6, 12, 18, 24]
    with pytest.raises(UserError, match="head_dilations"):
        build_head(
            name="deeplabv2", in_channels=8, low_level_channels=4, embed_dim=6, dilations=[0]
        )
    with pytest.raises(UserError, match="head_dilations"):
        build_head(name="pspnet", in_channels=8, low_level_channels=4, embed_dim=6, dilations=[1])

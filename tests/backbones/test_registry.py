"""Every registered backbone builds, maps images to `num_features`, and exposes its layer groups."""

import socket
import time

import pytest
import torch

from backbones import UnknownBackboneError, WeightsError, create_backbone, list_backbones
from backbones.registry import backbone_entry, has_imagenet_weights


@pytest.mark.parametrize("name", list_backbones())
def test_backbone_features_and_groups(name):
    net = create_backbone(name, "scratch").eval()
    size = net.input_config.min_size
    with torch.no_grad():
        out = net(torch.randn(2, 3, size, size))
    assert out.shape == (2, net.num_features)
    assert torch.isfinite(out).all()
    groups = net.layer_groups()
    # The designed CNNs (Rahman) have depth + 1 groups, down to 2; every other family has >= 4 stages.
    assert len(groups) >= (2 if name.startswith("designed_cnn") else 4)
    grouped = {id(p) for g in groups for p in g.parameters()}
    # Layer-wise unfreezing must be able to reach (nearly) every weight through the groups.
    covered = sum(p.numel() for p in net.parameters() if id(p) in grouped) / sum(p.numel() for p in net.parameters())
    assert covered > 0.95
    # Small-input variants (3x3 stride-1 stem) accept 8 px, smallcnn 16 px; everything else at least 28 px.
    floor = 8 if name.endswith("_small") else 16 if name == "smallcnn" else 28
    assert net.input_config.size >= net.input_config.min_size >= floor and len(net.input_config.mean) == 3


def test_unknown_backbone_lists_valid_names():
    with pytest.raises(UnknownBackboneError) as info:
        create_backbone("resnet19")
    assert "resnet19" in str(info.value) and "resnet18" in str(info.value) and "smallcnn" in str(info.value)


def test_unknown_weight_source_lists_valid_sources():
    with pytest.raises(WeightsError, match="scratch, imagenet, file:<path>"):
        create_backbone("smallcnn", "torchhub:foo")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_imagenet_offline_without_cache_names_cache_and_command(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    import torchvision.models as tvm

    weights = tvm.ResNet18_Weights.IMAGENET1K_V1
    # Point the download at a closed loopback port: "no network" without depending on DNS.
    monkeypatch.setattr(type(weights), "url", property(lambda self: f"http://127.0.0.1:{_closed_port()}/resnet18-f37072fd.pth"))
    start = time.monotonic()
    with pytest.raises(WeightsError) as info:
        create_backbone("resnet18", "imagenet")
    message = str(info.value)
    assert str(tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth") in message
    assert "get_weight('ResNet18_Weights.IMAGENET1K_V1')" in message
    assert time.monotonic() - start < 30  # fails, does not retry forever


def test_imagenet_weights_load_from_the_library_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    import torchvision.models as tvm

    reference = tvm.resnet18(weights=None)  # stands in for the downloaded ImageNet file
    path = backbone_entry("resnet18").imagenet.cache_path()
    path.parent.mkdir(parents=True)
    torch.save(reference.state_dict(), path)
    net = create_backbone("resnet18", "imagenet")
    assert torch.equal(net.body.conv1.weight, reference.conv1.weight)
    assert torch.equal(net.body.layer4[1].bn2.running_var, reference.layer4[1].bn2.running_var)


def test_smallcnn_has_no_imagenet_weights():
    assert not has_imagenet_weights("smallcnn")
    with pytest.raises(WeightsError, match="no ImageNet weights"):
        create_backbone("smallcnn", "imagenet")

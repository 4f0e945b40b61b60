"""Hub backbones (`hub:<id>`, `weights: hub`) from a local Hugging Face cache, offline; honest provenance.

    PYTHONPATH=. .venv/bin/python -m pytest tests/backbones/test_hub.py -q
"""

from __future__ import annotations

import json
import time

import pytest
import torch

from backbones import UnknownBackboneError, WeightsError, check_weights, create_backbone, weights_provenance
from tests.backbones.hub_cache import TINY_VIT, hub_cache, publish  # noqa: F401 - fixture

COMMIT = "1" * 40
OTHER = "2" * 40


def test_hub_weights_load_from_the_cache_with_their_commit(hub_cache):
    saved, snapshot = publish(hub_cache, "org/tiny-vit", COMMIT)
    net = create_backbone("hub:org/tiny-vit", "hub").eval()
    assert torch.equal(net.body.cls_token, saved.cls_token)
    assert torch.equal(net.body.blocks[1].mlp.fc1.weight, saved.blocks[1].mlp.fc1.weight)
    assert net.num_features == TINY_VIT["embed_dim"]
    with torch.no_grad():
        features = net(torch.randn(4, 3, 32, 32))
        # The CLS token after the final norm: the saved model's own pre-logits features.
        x = torch.randn(2, 3, 32, 32)
        assert torch.allclose(net(x), saved.forward_head(saved.forward_features(x), pre_logits=True), atol=1e-6)
    assert features.shape == (4, net.num_features) and torch.isfinite(features).all()
    assert net.provenance == weights_provenance("hub:org/tiny-vit", "hub") == f"hub:org/tiny-vit@{COMMIT}"
    cfg = json.loads((snapshot / "config.json").read_text())["pretrained_cfg"]
    config = net.input_config
    assert (config.size, list(config.mean), list(config.std)) == (cfg["input_size"][-1], cfg["mean"], cfg["std"])
    assert (config.interpolation, config.crop_pct) == (cfg["interpolation"], cfg["crop_pct"]) == ("bicubic", 0.9)


def test_vit_accepts_other_image_sizes_down_to_one_patch(hub_cache):
    publish(hub_cache, "org/tiny-vit", COMMIT)
    net = create_backbone("hub:org/tiny-vit", "hub").eval()
    assert net.input_config.min_size == TINY_VIT["patch_size"]
    with torch.no_grad():
        for size in (8, 48, 64):  # position embeddings interpolated to the patch grid (timm's dynamic_img_size)
            assert net(torch.randn(2, 3, size, size)).shape == (2, net.num_features)


def test_vit_layer_groups_are_embedding_then_blocks_and_cover_every_weight_once(hub_cache):
    publish(hub_cache, "org/tiny-vit", COMMIT, depth=3)
    net = create_backbone("hub:org/tiny-vit", "scratch")
    groups = net.layer_groups()
    assert len(groups) == 1 + 3  # embedding, then one per block
    ids = [{id(p) for p in g.parameters()} for g in groups]
    assert sum(map(len, ids)) == len(set().union(*ids)) == len(list(net.parameters()))  # each parameter in one group
    body = net.body
    assert {id(body.cls_token), id(body.pos_embed), id(body.patch_embed.proj.weight)} <= ids[0]
    for i, block in enumerate(body.blocks):
        assert {id(p) for p in block.parameters()} <= ids[1 + i]
    assert id(body.norm.weight) in ids[-1]  # the final norm trains with the last block, as timm groups it
    assert {"blocks.0", "blocks.2"} <= set(net.feature_taps())


def test_scratch_builds_from_the_config_without_reading_weights(hub_cache):
    saved, snapshot = publish(hub_cache, "org/tiny-vit", COMMIT)
    (snapshot / "model.safetensors").write_bytes(b"not a safetensors file")
    torch.manual_seed(1)
    net = create_backbone("hub:org/tiny-vit", "scratch")
    assert net.provenance == "scratch" and net.num_features == 32
    assert not torch.equal(net.body.blocks[0].attn.qkv.weight, saved.blocks[0].attn.qkv.weight)
    with pytest.raises(WeightsError, match="cannot be loaded.*hf download org/tiny-vit"):
        create_backbone("hub:org/tiny-vit", "hub")
    (snapshot / "model.safetensors").unlink()
    check_weights("hub:org/tiny-vit", "scratch")  # the architecture needs the config only
    with pytest.raises(WeightsError, match="model.safetensors"):
        check_weights("hub:org/tiny-vit", "hub")


def test_revision_pins_a_commit_and_main_follows_the_ref(hub_cache):
    first, _ = publish(hub_cache, "org/tiny-vit", COMMIT, seed=1, branch=None)
    latest, _ = publish(hub_cache, "org/tiny-vit", OTHER, seed=2)
    head = create_backbone("hub:org/tiny-vit", "hub")
    pinned = create_backbone(f"hub:org/tiny-vit@{COMMIT}", "hub")
    assert torch.equal(head.body.pos_embed, latest.pos_embed) and head.provenance == f"hub:org/tiny-vit@{OTHER}"
    assert torch.equal(pinned.body.pos_embed, first.pos_embed) and pinned.provenance == f"hub:org/tiny-vit@{COMMIT}"


def test_missing_model_offline_fails_at_check_time_naming_cache_and_command(hub_cache):
    start = time.monotonic()
    for weights in ("hub", "scratch"):  # even the architecture needs the repository's config
        with pytest.raises(WeightsError) as info:
            check_weights("hub:org/absent", weights)
        message = str(info.value)
        assert str(hub_cache / "models--org--absent") in message and "HF_HUB_OFFLINE" in message
        assert "hf download org/absent" in message and "timm.create_model('hf-hub:org/absent', pretrained=True)" in message
    with pytest.raises(WeightsError, match="models--org--absent"):
        create_backbone("hub:org/absent", "hub")
    assert time.monotonic() - start < 5  # offline: no connection attempted, no retries
    assert not (hub_cache / "models--org--absent").exists()  # nothing half-written into the cache


def test_hub_weights_only_for_hub_backbones_and_the_error_lists_the_valid_ones(hub_cache):
    publish(hub_cache, "org/tiny-vit", COMMIT)
    with pytest.raises(WeightsError, match=r"'resnet18' is not one.*Valid weights for 'resnet18': scratch, imagenet, file:<path>"):
        check_weights("resnet18", "hub")
    with pytest.raises(WeightsError, match=r"hub:timm/vit_small_patch14_dinov2.lvd142m` with `weights: hub`"):
        check_weights("timm:vit_small_patch14_dinov2.lvd142m", "hub")
    with pytest.raises(WeightsError, match="weights: hub"):
        check_weights("hub:org/tiny-vit", "imagenet")
    with pytest.raises(UnknownBackboneError, match="hub:<org>/<name>"):
        create_backbone("hub:org/two words", "scratch")


def test_a_repository_timm_cannot_build_is_refused_with_what_it_is(hub_cache):
    snapshot = hub_cache / "models--org--text-model" / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_size": 8}))
    (hub_cache / "models--org--text-model" / "refs").mkdir()
    (hub_cache / "models--org--text-model" / "refs" / "main").write_text(COMMIT)
    with pytest.raises(WeightsError, match="not a timm model.*model_type"):
        create_backbone("hub:org/text-model", "scratch")


def test_timm_pretrained_tags_are_named_not_called_imagenet(hub_cache):
    import timm
    from safetensors.torch import save_file

    # DINOv2 is not ImageNet: the provenance names timm's hub id (no commit until it is cached).
    assert weights_provenance("timm:vit_small_patch14_dinov2.lvd142m", "imagenet") == "hub:timm/vit_small_patch14_dinov2.lvd142m"
    reference = timm.create_model("resnet18.a1_in1k", pretrained=False)
    repo = hub_cache / "models--timm--resnet18.a1_in1k"
    (repo / "snapshots" / COMMIT).mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, repo / "snapshots" / COMMIT / "model.safetensors")
    net = create_backbone("timm:resnet18.a1_in1k", "imagenet")
    assert net.provenance == f"hub:timm/resnet18.a1_in1k@{COMMIT}"
    assert weights_provenance("resnet18", "imagenet") == "torchvision:ResNet18_Weights.IMAGENET1K_V1"
    assert weights_provenance("resnet18", "scratch") == "scratch"
    assert weights_provenance("smallcnn", "file:/x/backbone.pt") == "file:/x/backbone.pt"


def test_timm_input_config_records_interpolation_and_crop():
    import timm

    cfg = timm.models.get_pretrained_cfg("inception_resnet_v2.tf_in1k").to_dict()
    config = create_backbone("inception_resnet_v2").input_config
    assert (config.interpolation, config.crop_pct) == (cfg["interpolation"], cfg["crop_pct"]) == ("bicubic", 0.8975)


def test_resolved_run_weights_keep_the_run_as_their_provenance(tmp_path):
    from backbones import WeightSource

    path = tmp_path / "backbone.pt"
    torch.save(create_backbone("smallcnn").state_dict(), path)
    net = create_backbone("smallcnn", "run:abc123", resolve=lambda source: WeightSource("file", str(path)))
    assert net.provenance == "run:abc123"
    assert create_backbone("smallcnn", f"file:{path}").provenance == f"file:{path}"

"""A Hugging Face cache in a temporary folder, offline, holding tiny timm models laid out as huggingface_hub writes them."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import timm
from timm.models._hub import save_for_hf

# A 2-block ViT on 32 px images (8 px patches, 32-wide): a real timm architecture in milliseconds.
TINY_VIT = dict(img_size=32, patch_size=8, depth=2, embed_dim=32, num_heads=2)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def hub_cache(tmp_path, monkeypatch) -> Path:
    """An empty cache with HF_HUB_OFFLINE=1 (env and huggingface_hub's constants) and a hub endpoint that refuses."""
    from huggingface_hub import constants

    from backbones.registry import input_config

    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # huggingface_hub reads the environment once, at import: its constants are what its functions use.
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{_closed_port()}")
    input_config.cache_clear()  # hub names are reused across tests with other caches
    yield cache
    input_config.cache_clear()


def publish(cache: Path, repo_id: str, commit: str, *, seed: int = 0, branch: str | None = "main", **model_args):
    """Save a tiny timm ViT as commit `commit` of `repo_id` in `cache` (refs/<branch> -> it); returns (model, snapshot)."""
    import torch

    torch.manual_seed(seed)
    args = {**TINY_VIT, **model_args}
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=3, **args)
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / commit
    # timm's own export: config.json (architecture, model_args, pretrained_cfg) + model.safetensors.
    save_for_hf(model, snapshot, model_args=args, safe_serialization=True)
    if branch:
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / branch).write_text(commit)
    return model, snapshot

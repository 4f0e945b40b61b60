"""Backbone checkpoints: tensors plus plain-data provenance, loadable with `weights_only=True`."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

BACKBONE_FILE = "backbone.pt"  # artifact name fine-tuning cells look for in a pretraining run
PROVENANCE_FILE = "provenance.json"


def export_backbone(backbone: nn.Module, folder: Path, provenance: dict) -> Path:
    """Write `backbone.pt` (state dict + provenance) and `provenance.json` into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    provenance = json.loads(json.dumps(provenance))  # plain types only, or weights_only loading fails
    path = folder / BACKBONE_FILE
    state = {k: v.detach().cpu().clone() for k, v in backbone.state_dict().items()}
    torch.save({"state_dict": state, "provenance": provenance}, path)
    (folder / PROVENANCE_FILE).write_text(json.dumps(provenance, indent=2, sort_keys=True))
    return path


def read_provenance(path: Path) -> dict:
    payload = torch.load(path, map_location="cpu", weights_only=True)
    return dict(payload.get("provenance", {}))

"""Weight sources, parsed in one place: `scratch | imagenet | hub | file:<path> | run:<id> | cell:<hash>`.

  scratch        random initialisation (seeded by the cell)
  imagenet       the architecture's library weights, through that library's own cache
                 (torch hub for torchvision, the Hugging Face cache for timm; `backbones.imagenet`)
  hub            a `hub:<repo id>` backbone's own published weights (DINOv2, CLIP...), through
                 huggingface_hub's cache (`backbones.hub`); only for `hub:` backbones
  file:<path>    a backbone checkpoint written by `pretrain.export_backbone` (or a bare state dict)
  run:<id>       the checkpoint of a FINISHED MLflow pretraining run
  cell:<hash>    the checkpoint of the FINISHED pretraining cell with that spec hash (suites)

`run:` and `cell:` need MLflow, which sits above this layer: `create_backbone` takes a resolver
from the caller (`benchmark.cell.weights`) that turns them into `file:` sources.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from backbones.errors import WeightsError

KINDS = ("scratch", "imagenet", "file", "run", "cell", "hub")
VALID = "scratch, imagenet, file:<path>, run:<mlflow run id>, cell:<pretraining cell hash>, hub (hub:<id> backbones)"


@dataclass(frozen=True)
class WeightSource:
    """A parsed weights string."""

    kind: str  # one of KINDS
    ref: str = ""  # the path, run id or cell hash; "" for scratch, imagenet and hub

    @property
    def needs_resolver(self) -> bool:
        return self.kind in ("run", "cell")

    @property
    def path(self) -> Path:
        return Path(self.ref)

    def __str__(self) -> str:
        return f"{self.kind}:{self.ref}" if self.ref else self.kind


def parse_weights(text: str) -> WeightSource:
    """`"file:/x/backbone.pt"` -> WeightSource("file", "/x/backbone.pt"); errors list the valid forms."""
    if not isinstance(text, str):
        raise WeightsError(f"Weights must be a string ({VALID}), got {text!r}.")
    kind, sep, ref = text.partition(":")
    if kind in ("scratch", "imagenet", "hub") and not sep:
        return WeightSource(kind)
    if kind in ("file", "run", "cell") and sep and ref.strip():
        return WeightSource(kind, ref.strip())
    raise WeightsError(f"Unknown weight source {text!r}. Valid sources: {VALID}.")


def load_backbone_file(backbone: nn.Module, path: Path) -> dict:
    """Load a backbone checkpoint (`pretrain.export_backbone`'s, or a bare state dict) into `backbone`.

    Returns the checkpoint's provenance (empty for a bare state dict). Shapes are checked first so
    a mismatch reads as a diff rather than as PyTorch's size-mismatch wall of text.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"Backbone checkpoint {path} does not exist; check the path after 'file:'.")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001
        raise WeightsError(
            f"Backbone checkpoint {path} cannot be read with weights_only=True ({exc}). "
            "Export checkpoints with `pretrain.export_backbone`, which stores tensors and plain metadata only."
        ) from exc
    state = payload.get("state_dict", payload) if isinstance(payload, dict) else None
    if not isinstance(state, dict):
        raise WeightsError(f"Backbone checkpoint {path} holds no state dict.")
    expected = backbone.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in sorted(set(state) & set(expected))
        if tuple(state[k].shape) != tuple(expected[k].shape)
    ]
    if missing or unexpected or mismatched:
        name = getattr(backbone, "name", "?")
        source = payload.get("provenance", {}).get("backbone", "?") if "provenance" in payload else "?"
        raise WeightsError(
            f"Backbone checkpoint {path} (exported from backbone {source!r}) does not fit backbone {name!r}:\n"
            f"  missing in file ({len(missing)}): {missing[:5]}\n"
            f"  unexpected in file ({len(unexpected)}): {unexpected[:5]}\n"
            f"  shape mismatches ({len(mismatched)}): {mismatched[:5]}\n"
            "Use the same backbone name the checkpoint was exported from."
        )
    backbone.load_state_dict(state, strict=True)
    return dict(payload.get("provenance", {})) if "provenance" in payload else {}

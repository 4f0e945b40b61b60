"""Weight sources: `scratch`, `imagenet` (the library's own weights and cache), `file:<path>`.

ImageNet weights come from torchvision's download URL into torch hub's cache
(`$TORCH_HOME/hub/checkpoints`), the same file torchvision itself would use, so a machine that
already ran torchvision has them. Offline with no cached copy, the error names the cache file and
the one command that fills it, instead of hanging in a retry loop.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path
from urllib.error import URLError

import torch
from torch import nn

from backbones.errors import WeightsError

WEIGHT_SOURCES = ("scratch", "imagenet", "file:<path>")
# Seconds to wait for the weights server before declaring the machine offline.
DOWNLOAD_TIMEOUT_S = 20.0


def imagenet_cache_path(weights_enum: object) -> Path:
    """Where torch hub keeps the file for a torchvision `Weights` member."""
    filename = str(weights_enum.url).rsplit("/", 1)[-1]  # type: ignore[attr-defined]
    return Path(torch.hub.get_dir()) / "checkpoints" / filename


def apply_weights(backbone: nn.Module, weights: str, *, imagenet: Callable[[], object] | None) -> None:
    """Load `weights` into `backbone` in place (see the module docstring for the sources)."""
    if weights == "scratch":
        return
    if weights == "imagenet":
        _load_imagenet(backbone, imagenet)
        return
    if weights.startswith("file:"):
        load_backbone_file(backbone, Path(weights[len("file:"):]))
        return
    if weights.startswith("run:"):
        raise WeightsError(
            f"Weights {weights!r} name an MLflow run; resolve them with the benchmark layer "
            "(`benchmark.weights.resolve_weights`) which downloads the run's checkpoint to a file."
        )
    raise WeightsError(
        f"Unknown weight source {weights!r}. Valid sources: {', '.join(WEIGHT_SOURCES)}, run:<mlflow run id>."
    )


def _load_imagenet(backbone: nn.Module, imagenet: Callable[[], object] | None) -> None:
    name = getattr(backbone, "name", type(backbone).__name__)
    if imagenet is None:
        raise WeightsError(
            f"Backbone {name!r} has no ImageNet weights in its library; use weights 'scratch' or 'file:<path>'."
        )
    weights_enum = imagenet()
    path = imagenet_cache_path(weights_enum)
    if not path.exists():
        _download(weights_enum.url, path, name=name, enum=weights_enum)  # type: ignore[attr-defined]
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable cache file gets the same advice
        raise WeightsError(
            f"Cached ImageNet weights {path} for {name!r} cannot be read ({exc}). "
            f"Delete the file and fetch it again: {_fetch_command(weights_enum)}"
        ) from exc
    body = backbone.body  # type: ignore[attr-defined]
    result = body.load_state_dict(state, strict=False)
    # The library's classifier head is replaced by Identity in our bodies, so its keys are the
    # only ones allowed to be left over; anything else means the file is for another network.
    head_left = [k for k in result.unexpected_keys if k.startswith(("fc.", "classifier.", "head.", "AuxLogits."))]
    other = sorted(set(result.unexpected_keys) - set(head_left))
    if result.missing_keys or other:
        raise WeightsError(
            f"ImageNet weights {path} do not fit backbone {name!r}: "
            f"missing {result.missing_keys[:8]}, unexpected {other[:8]}."
        )


def _fetch_command(weights_enum: object) -> str:
    return (
        "python -c \"import torchvision; torchvision.models.get_weight("
        f"'{type(weights_enum).__name__}.{weights_enum.name}').get_state_dict(progress=True)\""  # type: ignore[attr-defined]
    )


def _download(url: str, path: Path, *, name: str, enum: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        torch.hub.download_url_to_file(url, str(path), progress=True)
    except (URLError, OSError, TimeoutError) as exc:
        raise WeightsError(
            f"ImageNet weights for {name!r} are not in the cache ({path}) and could not be "
            f"downloaded from {url} ({exc}). On a machine with internet access run:\n  "
            f"{_fetch_command(enum)}\nthen copy the file to {path} (or set TORCH_HOME to a cache "
            "that has it), or use weights 'scratch' or 'file:<path>'."
        ) from exc
    finally:
        socket.setdefaulttimeout(previous)


def load_backbone_file(backbone: nn.Module, path: Path) -> dict:
    """Load a backbone checkpoint written by `pretrain` (or a bare state dict) into `backbone`.

    Returns the checkpoint's provenance (empty for a bare state dict). Shapes are checked first so
    a mismatch reads as a diff rather than as PyTorch's size-mismatch wall of text.
    """
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

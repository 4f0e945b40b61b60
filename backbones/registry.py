"""Backbone registry: one decorated constructor per architecture (timm's `@register_model`)."""

from __future__ import annotations

from collections.abc import Callable

from backbones.backbone import Backbone
from backbones.errors import UnknownBackboneError
from backbones.weights import apply_weights

# A constructor builds the architecture with random weights; `imagenet_source` (if any) returns
# (url, loader) for its ImageNet weights so `weights.py` can cache and load them.
Constructor = Callable[[], Backbone]
_REGISTRY: dict[str, Constructor] = {}
_IMAGENET: dict[str, Callable[[], object]] = {}


def register_backbone(name: str, *, imagenet: Callable[[], object] | None = None):
    """Register `fn` as the constructor of backbone `name`.

    `imagenet` returns the library's weights enum (torchvision `Weights`) whose `.url` names the
    file in the torch hub cache; None when the architecture has no ImageNet weights.
    """

    def decorate(fn: Constructor) -> Constructor:
        if name in _REGISTRY:
            raise ValueError(f"backbone {name!r} registered twice")
        _REGISTRY[name] = fn
        if imagenet is not None:
            _IMAGENET[name] = imagenet
        return fn

    return decorate


def list_backbones() -> list[str]:
    return sorted(_REGISTRY)


def has_imagenet_weights(name: str) -> bool:
    return name in _IMAGENET


def create_backbone(name: str, weights: str = "scratch") -> Backbone:
    """Build backbone `name` and load `weights`: scratch | imagenet | file:<path>.

    (`run:<mlflow run id>` is resolved to `file:` by the benchmark layer, which owns MLflow.)
    """
    if name not in _REGISTRY:
        raise UnknownBackboneError(
            f"Unknown backbone {name!r}. Valid names: {', '.join(list_backbones())}."
        )
    backbone = _REGISTRY[name]()
    apply_weights(backbone, weights, imagenet=_IMAGENET.get(name))
    return backbone

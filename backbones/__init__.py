"""Backbones: architectures that map images to feature vectors, and where their weights come from.

    >>> from backbones import create_backbone, list_backbones
    >>> net = create_backbone("resnet18", weights="scratch")
    >>> net.num_features, net.input_config.size
    (512, 224)

Imports no other project package (see DESIGN.md, layering).
"""

from backbones.backbone import Backbone, InputConfig
from backbones.errors import BackboneError, UnknownBackboneError, WeightsError
from backbones.registry import create_backbone, list_backbones, register_backbone
from backbones import zoo as _zoo  # noqa: F401  (registers the built-in architectures)

__all__ = [
    "Backbone",
    "BackboneError",
    "InputConfig",
    "UnknownBackboneError",
    "WeightsError",
    "create_backbone",
    "list_backbones",
    "register_backbone",
]

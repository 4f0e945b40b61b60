"""Backbones: architectures that map images to feature vectors, and where their weights come from.

    >>> from backbones import create_backbone, list_backbones
    >>> net = create_backbone("resnet18", weights="scratch")
    >>> net.num_features, net.input_config.size
    (512, 224)

Architectures live in `backbones/zoo/` (torchvision, timm, Hugging Face Hub models, our small
CNNs), one decorated constructor each; weight sources are parsed in `backbones/weights.py`, ImageNet
caches handled in `backbones/imagenet.py`, hub models' caches in `backbones/hub.py`. This is the
lowest layer: it imports no other project package.
"""

from backbones.backbone import Backbone, InputConfig
from backbones.errors import BackboneError, UnknownBackboneError, WeightsError
from backbones.registry import (
    BACKBONES,
    Registry,
    backbone_entry,
    backbone_families,
    check_weights,
    create_backbone,
    has_imagenet_weights,
    import_submodules,
    list_backbones,
    register_backbone,
    valid_weights,
    weights_provenance,
)
from backbones.weights import WeightSource, parse_weights

import_submodules("backbones.zoo")

__all__ = [
    "BACKBONES",
    "Backbone",
    "BackboneError",
    "InputConfig",
    "Registry",
    "UnknownBackboneError",
    "WeightSource",
    "WeightsError",
    "backbone_entry",
    "backbone_families",
    "check_weights",
    "create_backbone",
    "has_imagenet_weights",
    "import_submodules",
    "list_backbones",
    "parse_weights",
    "register_backbone",
    "valid_weights",
    "weights_provenance",
]

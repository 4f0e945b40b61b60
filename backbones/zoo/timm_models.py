"""timm architectures: any `timm:<model>` name, plus the Inception networks of the seed papers.

    medtl list                                   # shows the registered names and the timm family
    create_backbone("timm:resnet18", "scratch")  # any of timm's ~1,400 models

The input config (size, mean, std) comes from the model's pretrained config, its ImageNet weights
from timm's own cache (`backbones.imagenet.TimmImageNet`), and its layer groups and feature taps
from timm's `feature_info` (the stages timm itself exposes for feature extraction).
"""

from __future__ import annotations

from torch import nn

from backbones.backbone import Backbone, InputConfig
from backbones.errors import UnknownBackboneError
from backbones.imagenet import TimmImageNet
from backbones.registry import BackboneEntry, register_backbone, register_backbone_family


def _units(model: nn.Module, names: set[str], prefix: str = "") -> list[tuple[str, nn.Module]]:
    """The model's children in order, opened up where a feature stage lies deeper (`stages.0`)."""
    units = []
    for child_name, child in model.named_children():
        full = f"{prefix}{child_name}"
        if any(n.startswith(full + ".") for n in names):
            units += _units(child, names, full + ".")
        else:
            units.append((full, child))
    return units


def _groups(model: nn.Module) -> list[nn.Module]:
    """Consecutive children cut after each of `feature_info`'s stage modules (stem, stage 1, ...)."""
    names = {info["module"] for info in model.feature_info}
    groups, current = [], []
    for name, module in _units(model, names):
        current.append(module)
        if name in names:
            groups.append(nn.Sequential(*current))
            current = []
    if current and groups:  # pooling / head after the last stage: parameter-free or the removed head
        groups[-1] = nn.Sequential(*groups[-1], *current)
    return groups


def timm_input_config(cfg: dict, min_size: int) -> InputConfig:
    """Our `InputConfig` from a timm `pretrained_cfg`: the size, normalisation, resize filter and crop its weights assume."""
    return InputConfig(
        size=int(cfg["input_size"][-1]),
        mean=tuple(float(v) for v in cfg.get("mean", (0.485, 0.456, 0.406))),
        std=tuple(float(v) for v in cfg.get("std", (0.229, 0.224, 0.225))),
        min_size=min_size,
        interpolation=str(cfg.get("interpolation") or "bilinear"),
        crop_pct=float(cfg.get("crop_pct") or 1.0),
    )


def timm_backbone(model_name: str, name: str | None = None, *, min_size: int | None = None) -> Backbone:
    """A timm model without its classifier, wrapped as a `Backbone`."""
    import timm

    net = timm.create_model(model_name, pretrained=False, num_classes=0)
    cfg = net.pretrained_cfg
    min_input = cfg.get("min_input_size")
    config = timm_input_config(cfg, min_size or (int(min_input[-1]) if min_input else 32))
    modules = dict(net.named_modules())
    taps = {info["module"]: modules[info["module"]] for info in net.feature_info}
    return Backbone(name or f"timm:{model_name}", net, net.num_features, config, _groups(net), taps)


def _timm_entry(model: str) -> BackboneEntry:
    import timm

    if not timm.is_model(model):
        close = timm.list_models(f"*{model.split('.')[0][:6]}*")[:10]
        raise UnknownBackboneError(f"Unknown timm model {model!r} (in 'timm:{model}'). Similar timm models: "
                                   f"{', '.join(close) or 'none'}; `python -c \"import timm; print(timm.list_models())\"` lists all.")
    cfg = timm.models.get_pretrained_cfg(model)
    hub_id = cfg.hf_hub_id if cfg else None
    # timm's pretrained tag may be DINOv2, CLIP... rather than ImageNet; `weights: imagenet` loads it
    # all the same, and its provenance names the hub id (`TimmImageNet.provenance`).
    no_hub = (f"timm's own weights for it are `weights: imagenet`, or name the hub model: `hub:{hub_id}` with `weights: hub`"
              if hub_id else "")
    return BackboneEntry(lambda: timm_backbone(model), TimmImageNet(model) if hub_id else None, "timm", no_hub=no_hub)


register_backbone_family("timm", _timm_entry)


# Inception's stem needs at least 75 px (torchvision's documented minimum); timm's config omits it.
@register_backbone("inception_v3", imagenet=TimmImageNet("inception_v3.tv_in1k"), family="timm")
def inception_v3() -> Backbone:
    """Rahman's and the Medico teams' Inception V3 (299 px), torchvision's ImageNet weights via timm."""
    return timm_backbone("inception_v3.tv_in1k", "inception_v3", min_size=75)


@register_backbone("inception_resnet_v2", imagenet=TimmImageNet("inception_resnet_v2.tf_in1k"), family="timm")
def inception_resnet_v2() -> Backbone:
    """Hicks et al.'s InceptionResNetV2 (299 px, the TensorFlow ImageNet weights)."""
    return timm_backbone("inception_resnet_v2.tf_in1k", "inception_resnet_v2", min_size=75)

"""Hugging Face Hub models: any `hub:<repo id>[@<revision>]` that timm can load is a backbone.

    backbones: [hub:timm/vit_small_patch14_dinov2.lvd142m]       # in a suite
    sources: {dinov2: {weights: hub}}                             # its published weights; scratch: architecture only
    create_backbone("hub:timm/vit_small_patch14_dinov2.lvd142m", "hub")

The architecture and input config (size, mean, std, interpolation, crop) come from the
repository's `config.json`, the weights from its snapshot in the Hugging Face cache
(`backbones.hub`). Features are timm's pooled output without a classifier (`num_classes=0`: the
CLS token, or the pooled tokens, of a ViT). Layer groups follow timm's own `group_matcher` (the
grouping timm uses for layer-wise learning-rate decay): for a ViT the embedding (patch embedding,
class / register tokens, position embedding), then one group per block, the final norm joining
the last block, as timm joins it.
"""

from __future__ import annotations

from torch import nn

from backbones.backbone import Backbone
from backbones.hub import HubModel, TimmHubWeights, create_timm_model
from backbones.registry import BackboneEntry, register_backbone_family
from backbones.zoo.timm_models import _groups, timm_input_config


class LayerGroup(nn.Module):
    """The modules and loose parameters (class token, position embedding) of one timm layer group.

    Not registered in the `Backbone` (its groups are a plain list), so nothing is stored twice; the
    modules are kept whole so BatchNorm layers stay visible to the fine-tuning callbacks.
    """

    def __init__(self, net: nn.Module, names: set[str]) -> None:
        super().__init__()
        covered: set[str] = set()
        taken: list[str] = []  # modules already in the group: their children are in through them
        for module_name, module in net.named_modules():
            if not module_name or any(module_name.startswith(t + ".") for t in taken):
                continue
            own = {f"{module_name}.{p}" for p, _ in module.named_parameters()}
            if own and own <= names:
                self.add_module(module_name.replace(".", "__"), module)
                taken.append(module_name)
                covered |= own
        parameters = dict(net.named_parameters())
        for loose in sorted(names - covered):
            self.register_parameter(loose.replace(".", "__"), parameters[loose])


def matched_groups(net: nn.Module) -> list[nn.Module]:
    """timm's layer groups for `net`, input first; models without a `group_matcher` fall back to feature stages."""
    from timm.models import group_parameters

    if not hasattr(net, "group_matcher"):
        return _groups(net)
    grouped = group_parameters(net, net.group_matcher(coarse=False))
    return [LayerGroup(net, set(grouped[key])) for key in sorted(grouped)]


def _min_size(net: nn.Module, cfg: dict, size: int) -> int:
    patch = getattr(getattr(net, "patch_embed", None), "patch_size", None)
    if getattr(net, "dynamic_img_size", False) and patch:
        return int(max(patch))  # one patch: position embeddings are interpolated to any grid
    if cfg.get("fixed_input_size"):
        return size  # built without dynamic sizes: only its native size fits
    min_input = cfg.get("min_input_size")
    return int(min_input[-1]) if min_input else 32


def hub_backbone(model: HubModel, name: str) -> Backbone:
    """The hub model's architecture (random weights, from its config) wrapped as a `Backbone`."""
    net = create_timm_model(model, pretrained=False)
    cfg = net.pretrained_cfg
    config = timm_input_config(cfg, _min_size(net, cfg, int(cfg["input_size"][-1])))
    modules = dict(net.named_modules())
    taps = {info["module"]: modules[info["module"]] for info in getattr(net, "feature_info", [])}
    return Backbone(name, net, net.num_features, config, matched_groups(net), taps)


def _hub_entry(ref: str) -> BackboneEntry:
    model = HubModel.parse(ref)
    return BackboneEntry(lambda: hub_backbone(model, f"hub:{ref}"), family="hub", hub=TimmHubWeights(model),
                         no_imagenet="a hub model's own published weights are `weights: hub`")


register_backbone_family("hub", _hub_entry)

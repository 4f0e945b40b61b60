"""torchvision architectures with their ImageNet weights (torch hub's cache).

The classifier is replaced by Identity so the body maps images to features; layer groups follow
each family's stages, input to output, for layer-wise unfreezing.
"""

from __future__ import annotations

import torchvision.models as tvm
from torch import nn

from backbones.backbone import Backbone, InputConfig
from backbones.imagenet import TorchvisionImageNet
from backbones.registry import register_backbone

IMAGENET_224 = InputConfig(size=224)


def _split_at_pools(features: nn.Sequential) -> tuple[list[nn.Module], dict[str, nn.Module]]:
    """Cut a VGG/AlexNet `features` stack after each max-pool: the Keras block names."""
    groups, taps, current, block = [], {}, [], 1
    for layer in features:
        current.append(layer)
        if isinstance(layer, nn.MaxPool2d):
            groups.append(nn.Sequential(*current))
            taps[f"block{block}_pool"] = layer
            current, block = [], block + 1
    if current:
        groups.append(nn.Sequential(*current))
    return groups, taps


def _resnet(name: str, ctor) -> Backbone:
    net = ctor(weights=None)
    num_features = net.fc.in_features
    net.fc = nn.Identity()
    groups = [nn.Sequential(net.conv1, net.bn1), net.layer1, net.layer2, net.layer3, net.layer4]
    return Backbone(name, net, num_features, IMAGENET_224, groups, {"layer4": net.layer4})


def _vgg_like(name: str, ctor, config: InputConfig = IMAGENET_224) -> Backbone:
    net = ctor(weights=None)
    # Keep the pretrained fully connected layers (fc6, fc7) as Hicks et al. did; drop only fc8.
    num_features = net.classifier[-1].in_features
    net.classifier[-1] = nn.Identity()
    groups, taps = _split_at_pools(net.features)
    groups.append(net.classifier)
    return Backbone(name, net, num_features, config, groups, taps)


def _densenet(name: str, ctor) -> Backbone:
    net = ctor(weights=None)
    num_features = net.classifier.in_features
    net.classifier = nn.Identity()
    f = net.features
    groups = [
        nn.Sequential(f.conv0, f.norm0, f.relu0, f.pool0),
        nn.Sequential(f.denseblock1, f.transition1),
        nn.Sequential(f.denseblock2, f.transition2),
        nn.Sequential(f.denseblock3, f.transition3),
        nn.Sequential(f.denseblock4, f.norm5),
    ]
    return Backbone(name, net, num_features, IMAGENET_224, groups, {"norm5": f.norm5})


def _stages(name: str, ctor) -> Backbone:
    """EfficientNet and ConvNeXt: `features` is already a list of stages."""
    net = ctor(weights=None)
    num_features = net.classifier[-1].in_features
    net.classifier[-1] = nn.Identity()
    return Backbone(name, net, num_features, IMAGENET_224, list(net.features), {"features": net.features})


@register_backbone("resnet18", imagenet=TorchvisionImageNet(lambda: tvm.ResNet18_Weights.IMAGENET1K_V1), family="torchvision")
def resnet18() -> Backbone:
    return _resnet("resnet18", tvm.resnet18)


@register_backbone("resnet50", imagenet=TorchvisionImageNet(lambda: tvm.ResNet50_Weights.IMAGENET1K_V2), family="torchvision")
def resnet50() -> Backbone:
    return _resnet("resnet50", tvm.resnet50)


@register_backbone("alexnet", imagenet=TorchvisionImageNet(lambda: tvm.AlexNet_Weights.IMAGENET1K_V1), family="torchvision")
def alexnet() -> Backbone:
    return _vgg_like("alexnet", tvm.alexnet, InputConfig(size=224, min_size=64))


@register_backbone("vgg11", imagenet=TorchvisionImageNet(lambda: tvm.VGG11_Weights.IMAGENET1K_V1), family="torchvision")
def vgg11() -> Backbone:
    return _vgg_like("vgg11", tvm.vgg11)


@register_backbone("vgg16", imagenet=TorchvisionImageNet(lambda: tvm.VGG16_Weights.IMAGENET1K_V1), family="torchvision")
def vgg16() -> Backbone:
    return _vgg_like("vgg16", tvm.vgg16)


@register_backbone("vgg19", imagenet=TorchvisionImageNet(lambda: tvm.VGG19_Weights.IMAGENET1K_V1), family="torchvision")
def vgg19() -> Backbone:
    return _vgg_like("vgg19", tvm.vgg19)


@register_backbone("densenet169", imagenet=TorchvisionImageNet(lambda: tvm.DenseNet169_Weights.IMAGENET1K_V1), family="torchvision")
def densenet169() -> Backbone:
    return _densenet("densenet169", tvm.densenet169)


@register_backbone("densenet201", imagenet=TorchvisionImageNet(lambda: tvm.DenseNet201_Weights.IMAGENET1K_V1), family="torchvision")
def densenet201() -> Backbone:
    return _densenet("densenet201", tvm.densenet201)


@register_backbone("efficientnet_b0", imagenet=TorchvisionImageNet(lambda: tvm.EfficientNet_B0_Weights.IMAGENET1K_V1), family="torchvision")
def efficientnet_b0() -> Backbone:
    return _stages("efficientnet_b0", tvm.efficientnet_b0)


@register_backbone("convnext_tiny", imagenet=TorchvisionImageNet(lambda: tvm.ConvNeXt_Tiny_Weights.IMAGENET1K_V1), family="torchvision")
def convnext_tiny() -> Backbone:
    return _stages("convnext_tiny", tvm.convnext_tiny)


# Small-input variants, as MedMNIST v2's own ResNet baselines: a 3x3 stride-1 stem and no max-pool,
# so a 28-64 px image keeps a 28-64 px map into the first stage instead of 7-16 px (and a 1x1 map
# at the end). For training from scratch and for medtl's own pretraining; the ImageNet weights were
# learnt through the 7x7 stride-2 stem and do not transfer into a 3x3 one.
SMALL_INPUT = InputConfig(size=28, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), min_size=8)
SMALL_NO_IMAGENET = ("its 3x3 stride-1 stem is built for 28-64 px images, while ImageNet weights need the 7x7 "
                     "stride-2 stem; for ImageNet weights use the standard backbone and resize images to its "
                     "native 224 px (image_size: native)")


def _small_resnet(name: str, ctor) -> Backbone:
    backbone = _resnet(name, ctor)
    net = backbone.body
    net.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
    net.maxpool = nn.Identity()
    groups = [nn.Sequential(net.conv1, net.bn1), net.layer1, net.layer2, net.layer3, net.layer4]
    return Backbone(name, net, backbone.num_features, SMALL_INPUT, groups, backbone.feature_taps())


def _small_densenet(name: str, ctor) -> Backbone:
    backbone = _densenet(name, ctor)
    f = backbone.body.features
    f.conv0 = nn.Conv2d(3, f.conv0.out_channels, kernel_size=3, stride=1, padding=1, bias=False)
    f.pool0 = nn.Identity()
    groups = [nn.Sequential(f.conv0, f.norm0, f.relu0, f.pool0), *backbone.layer_groups()[1:]]
    return Backbone(name, backbone.body, backbone.num_features, SMALL_INPUT, groups, backbone.feature_taps())


@register_backbone("resnet18_small", family="torchvision", no_imagenet=SMALL_NO_IMAGENET)
def resnet18_small() -> Backbone:
    return _small_resnet("resnet18_small", tvm.resnet18)


@register_backbone("resnet50_small", family="torchvision", no_imagenet=SMALL_NO_IMAGENET)
def resnet50_small() -> Backbone:
    return _small_resnet("resnet50_small", tvm.resnet50)


@register_backbone("densenet121_small", family="torchvision", no_imagenet=SMALL_NO_IMAGENET)
def densenet121_small() -> Backbone:
    return _small_densenet("densenet121_small", tvm.densenet121)

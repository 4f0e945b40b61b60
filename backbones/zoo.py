"""The built-in architectures. One decorated constructor each; `list_backbones()` is the catalogue.

torchvision supplies the ImageNet architectures (and their weights' URLs); `smallcnn` is the
"independently designed" small CNN of Rahman's pneumonia study, sized for 28-64 px images.
"""

from __future__ import annotations

import torchvision.models as tvm
from torch import nn

from backbones.backbone import Backbone, InputConfig
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
    return Backbone(name, net, num_features, IMAGENET_224, groups, {"avgpool": net.avgpool})


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
    return Backbone(name, net, num_features, IMAGENET_224, groups)


@register_backbone("resnet18", imagenet=lambda: tvm.ResNet18_Weights.IMAGENET1K_V1)
def resnet18() -> Backbone:
    return _resnet("resnet18", tvm.resnet18)


@register_backbone("resnet50", imagenet=lambda: tvm.ResNet50_Weights.IMAGENET1K_V2)
def resnet50() -> Backbone:
    return _resnet("resnet50", tvm.resnet50)


@register_backbone("alexnet", imagenet=lambda: tvm.AlexNet_Weights.IMAGENET1K_V1)
def alexnet() -> Backbone:
    return _vgg_like("alexnet", tvm.alexnet, InputConfig(size=224, min_size=64))


@register_backbone("vgg11", imagenet=lambda: tvm.VGG11_Weights.IMAGENET1K_V1)
def vgg11() -> Backbone:
    return _vgg_like("vgg11", tvm.vgg11)


@register_backbone("vgg16", imagenet=lambda: tvm.VGG16_Weights.IMAGENET1K_V1)
def vgg16() -> Backbone:
    return _vgg_like("vgg16", tvm.vgg16)


@register_backbone("vgg19", imagenet=lambda: tvm.VGG19_Weights.IMAGENET1K_V1)
def vgg19() -> Backbone:
    return _vgg_like("vgg19", tvm.vgg19)


@register_backbone("densenet169", imagenet=lambda: tvm.DenseNet169_Weights.IMAGENET1K_V1)
def densenet169() -> Backbone:
    return _densenet("densenet169", tvm.densenet169)


@register_backbone("densenet201", imagenet=lambda: tvm.DenseNet201_Weights.IMAGENET1K_V1)
def densenet201() -> Backbone:
    return _densenet("densenet201", tvm.densenet201)


@register_backbone("inception_v3", imagenet=lambda: tvm.Inception_V3_Weights.IMAGENET1K_V1)
def inception_v3() -> Backbone:
    # transform_input=True matches how torchvision runs the ImageNet weights; aux head off
    # because a fine-tuned feature extractor has no use for it (its keys are skipped on load).
    net = tvm.inception_v3(weights=None, aux_logits=False, transform_input=True, init_weights=True)
    num_features = net.fc.in_features
    net.fc = nn.Identity()
    groups = [
        nn.Sequential(net.Conv2d_1a_3x3, net.Conv2d_2a_3x3, net.Conv2d_2b_3x3),
        nn.Sequential(net.Conv2d_3b_1x1, net.Conv2d_4a_3x3),
        nn.Sequential(net.Mixed_5b, net.Mixed_5c, net.Mixed_5d),
        nn.Sequential(net.Mixed_6a, net.Mixed_6b, net.Mixed_6c, net.Mixed_6d, net.Mixed_6e),
        nn.Sequential(net.Mixed_7a, net.Mixed_7b, net.Mixed_7c),
    ]
    return Backbone("inception_v3", net, num_features, InputConfig(size=299, min_size=75), groups)


@register_backbone("efficientnet_b0", imagenet=lambda: tvm.EfficientNet_B0_Weights.IMAGENET1K_V1)
def efficientnet_b0() -> Backbone:
    net = tvm.efficientnet_b0(weights=None)
    num_features = net.classifier[-1].in_features
    net.classifier[-1] = nn.Identity()
    return Backbone("efficientnet_b0", net, num_features, IMAGENET_224, list(net.features))


@register_backbone("convnext_tiny", imagenet=lambda: tvm.ConvNeXt_Tiny_Weights.IMAGENET1K_V1)
def convnext_tiny() -> Backbone:
    net = tvm.convnext_tiny(weights=None)
    num_features = net.classifier[-1].in_features
    net.classifier[-1] = nn.Identity()
    return Backbone("convnext_tiny", net, num_features, IMAGENET_224, list(net.features))


class _SmallCNN(nn.Sequential):
    """Four conv-BN-ReLU-pool blocks and global average pooling; ~0.4 M parameters."""

    def __init__(self, widths: tuple[int, ...] = (32, 64, 96, 128)) -> None:
        blocks, in_ch = [], 3
        for width in widths:
            blocks.append(
                nn.Sequential(
                    nn.Conv2d(in_ch, width, 3, padding=1, bias=False),
                    nn.BatchNorm2d(width),
                    nn.ReLU(inplace=True),
                    nn.Conv2d(width, width, 3, padding=1, bias=False),
                    nn.BatchNorm2d(width),
                    nn.ReLU(inplace=True),
                    nn.MaxPool2d(2, ceil_mode=True),
                )
            )
            in_ch = width
        super().__init__(*blocks, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.num_features = in_ch


@register_backbone("smallcnn")
def smallcnn() -> Backbone:
    net = _SmallCNN()
    # Mean/std 0.5: there are no pretrained statistics to match, and 0.5 centres [0, 1] images.
    config = InputConfig(size=64, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    return Backbone("smallcnn", net, net.num_features, config, list(net)[:4])

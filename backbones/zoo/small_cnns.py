"""Small CNNs designed for 28-64 px images ("independently designed" networks, Rahman's study)."""

from __future__ import annotations

from torch import nn

from backbones.backbone import Backbone, InputConfig
from backbones.registry import register_backbone


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


@register_backbone("smallcnn", family="medtl")
def smallcnn() -> Backbone:
    net = _SmallCNN()
    # Mean/std 0.5: there are no pretrained statistics to match, and 0.5 centres [0, 1] images.
    # min_size 16: four ceil-mode pools take 28 px (MedMNIST) to 2x2 and 16 px to 1x1.
    config = InputConfig(size=64, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), min_size=16)
    blocks = list(net)[:4]
    # Every block's output is a spatial map (C x H x W): frozen-feature strategies (VLAD) read any of them.
    taps = {f"block{i}": block for i, block in enumerate(blocks, start=1)}
    return Backbone("smallcnn", net, net.num_features, config, blocks, taps)

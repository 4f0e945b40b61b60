"""Independently designed CNNs of increasing depth (Rahman: small custom networks vs Inception/VGG).

    medtl list                      # designed_cnn1 ... designed_cnn6
    strategies: [full]  sources: {none: {weights: scratch}}  backbones: [designed_cnn1, designed_cnn4]

The paper compares six networks designed for chest X-rays, trained from scratch with RMSprop
(`optimizer: rmsprop` in a suite), against ImageNet networks. Its exact layer tables are not
published in a form we can copy, so the family keeps the paper's building blocks and its
one knob, depth: network k has k blocks of conv3x3 -> batch-norm -> ReLU -> 2x2 max-pool ->
dropout, widths doubling from 32 (capped at 256), then global average pooling and a dense
layer of 128 units with dropout. Being designed from scratch, they have no ImageNet weights.
"""

from __future__ import annotations

from torch import nn

from backbones.backbone import Backbone, InputConfig
from backbones.registry import register_backbone

DEPTHS = (1, 2, 3, 4, 5, 6)
DENSE_UNITS = 128  # the features the new head reads: the dense layer's output
NO_IMAGENET = "it is an independently designed network (Rahman), trained from scratch only"


def _block(in_ch: int, out_ch: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2, ceil_mode=True),  # ceil: a 1x1 map stays 1x1 instead of vanishing
        nn.Dropout2d(dropout),
    )


def designed_cnn(depth: int) -> Backbone:
    widths = [min(32 * 2**i, 256) for i in range(depth)]
    blocks, in_ch = [], 3
    for width in widths:
        blocks.append(_block(in_ch, width, dropout=0.1))
        in_ch = width
    dense = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(in_ch, DENSE_UNITS), nn.ReLU(inplace=True),
                          nn.Dropout(0.3))
    body = nn.Sequential(*blocks, dense)
    name = f"designed_cnn{depth}"
    config = InputConfig(size=64, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), min_size=32)
    # Layer groups input -> output; the last conv block is the spatial tap (VLAD, feature maps).
    return Backbone(name, body, DENSE_UNITS, config, [*blocks, dense], {f"block{depth}": blocks[-1]})


def _register(depth: int) -> None:
    register_backbone(f"designed_cnn{depth}", family="medtl (Rahman)", no_imagenet=NO_IMAGENET)(lambda: designed_cnn(depth))


for _depth in DEPTHS:
    _register(_depth)

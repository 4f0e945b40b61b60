"""Independently designed CNNs varying depth, pooling and batch-norm (Rahman: small custom networks vs Inception/VGG).

    medtl list                      # designed_cnn1 ... designed_cnn6, each also _avgpool, _nobn, _avgpool_nobn
    strategies: [full]  sources: {none: {weights: scratch}}  backbones: [designed_cnn1, designed_cnn4_nobn]

The paper compares six networks designed for chest X-rays ("Arch 1-6", differing in conv layers,
pooling layers, batch-normalisation and depth), trained from scratch with RMSprop (`optimizer:
rmsprop` in a suite), against ImageNet networks. Its exact layer tables are not published in a
form we can copy, so the family keeps the paper's building blocks and its three knobs:

  designed_cnn<k>                k blocks of conv3x3 -> batch-norm -> ReLU -> 2x2 max-pool -> dropout
  designed_cnn<k>_avgpool        the same with 2x2 average pooling in every block
  designed_cnn<k>_nobn           no batch-norm (the convolutions get a bias instead)
  designed_cnn<k>_avgpool_nobn   both

for k = 1..6, widths doubling from 32 (capped at 256), then global average pooling and a dense
layer of 128 units with dropout. Being designed from scratch, they have no ImageNet weights.
"""

from __future__ import annotations

from torch import nn

from backbones.backbone import Backbone, InputConfig
from backbones.registry import register_backbone

DEPTHS = (1, 2, 3, 4, 5, 6)
DENSE_UNITS = 128  # the features the new head reads: the dense layer's output
NO_IMAGENET = "it is an independently designed network (Rahman), trained from scratch only"


POOLS = {"max": nn.MaxPool2d, "avg": nn.AvgPool2d}  # the pooling of every conv block


def _block(in_ch: int, out_ch: int, dropout: float, *, pool: str = "max", batch_norm: bool = True) -> nn.Sequential:
    # Without batch-norm the convolution carries the bias that batch-norm's shift would make redundant.
    norm = [nn.BatchNorm2d(out_ch)] if batch_norm else []
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=not batch_norm),
        *norm,
        nn.ReLU(inplace=True),
        POOLS[pool](2, ceil_mode=True),  # ceil: a 1x1 map stays 1x1 instead of vanishing
        nn.Dropout2d(dropout),
    )


def variant_name(depth: int, *, pool: str = "max", batch_norm: bool = True) -> str:
    """The registered name of a designed CNN: `designed_cnn4`, `designed_cnn4_avgpool`, `designed_cnn4_nobn`..."""
    return f"designed_cnn{depth}" + ("_avgpool" if pool == "avg" else "") + ("" if batch_norm else "_nobn")


def designed_cnn(depth: int, *, pool: str = "max", batch_norm: bool = True) -> Backbone:
    if pool not in POOLS:
        raise ValueError(f"Unknown pooling {pool!r} for a designed CNN. Valid poolings: {', '.join(POOLS)}.")
    widths = [min(32 * 2**i, 256) for i in range(depth)]
    blocks, in_ch = [], 3
    for width in widths:
        blocks.append(_block(in_ch, width, dropout=0.1, pool=pool, batch_norm=batch_norm))
        in_ch = width
    dense = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(in_ch, DENSE_UNITS), nn.ReLU(inplace=True),
                          nn.Dropout(0.3))
    body = nn.Sequential(*blocks, dense)
    name = variant_name(depth, pool=pool, batch_norm=batch_norm)
    config = InputConfig(size=64, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), min_size=32)
    # Layer groups input -> output; the last conv block is the spatial tap (VLAD, feature maps).
    return Backbone(name, body, DENSE_UNITS, config, [*blocks, dense], {f"block{depth}": blocks[-1]})


def _register(depth: int, pool: str, batch_norm: bool) -> None:
    register_backbone(variant_name(depth, pool=pool, batch_norm=batch_norm), family="medtl (Rahman)",
                      no_imagenet=NO_IMAGENET)(lambda: designed_cnn(depth, pool=pool, batch_norm=batch_norm))


for _depth in DEPTHS:
    for _pool in POOLS:
        for _batch_norm in (True, False):
            _register(_depth, _pool, _batch_norm)

"""`standin:<backbone>`: a tiny CNN in the place of a registered network, for `medtl benchmark SUITE --stand-in`.

    backbones: [standin:densenet201]     # what benchmark/plan/standin.py writes for `densenet201`

A paper suite's networks (DenseNet201, InceptionResNetV2, VGG19 ...) need seconds per step on a CPU even at
their minimum input size, and a stand-in run trains about a hundred cells; its point is the protocol
(every row, source, ensemble, external set), not the architecture, which the backbone tests cover. So each
such network becomes this two-block CNN (~3 k parameters), named after the network it stands in for so
the stand-in's rows map one to one onto the real suite's. It has spatial taps (VLAD reads them) and two
layer groups (layer-wise strategies walk them); it has no ImageNet weights (stand-ins train from scratch).
"""

from __future__ import annotations

from backbones.backbone import Backbone, InputConfig
from backbones.errors import UnknownBackboneError
from backbones.registry import BACKBONES, BackboneEntry, register_backbone_family
from backbones.zoo.small_cnns import _SmallCNN

PREFIX = "standin"
WIDTHS = (8, 16)  # two conv blocks: the smallest net that still has two layer groups and a spatial map


def _standin(name: str) -> Backbone:
    net = _SmallCNN(WIDTHS)
    blocks = list(net)[: len(WIDTHS)]
    config = InputConfig(size=32, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), min_size=8)
    taps = {f"block{i}": block for i, block in enumerate(blocks, start=1)}
    return Backbone(f"{PREFIX}:{name}", net, net.num_features, config, blocks, taps)


# Families whose names a stand-in takes as they are: their models need a download or a cache to resolve, which is
# exactly what a stand-in runs without (foundation.yaml's hub:<id> backbones in CI).
NAMED_FAMILIES = ("hub", "timm")


def _entry(model: str) -> BackboneEntry:
    if model not in BACKBONES.names() and model.split(":", 1)[0] not in NAMED_FAMILIES:
        raise UnknownBackboneError(f"standin:{model}: {model!r} is not a registered backbone; a stand-in takes the name "
                                   f"of one ({', '.join(BACKBONES.names())}), or a hub:<id> / timm:<model> name.")
    return BackboneEntry(lambda: _standin(model), None, "medtl (stand-in)",
                         "a stand-in trains from scratch (benchmark/plan/standin.py)")


register_backbone_family(PREFIX, _entry)

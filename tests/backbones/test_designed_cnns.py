"""Rahman's designed CNNs: depth x pooling (max / average) x batch-norm (with / without).

    .venv/bin/python -m pytest tests/backbones/test_designed_cnns.py -q -p no:cacheprovider
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from backbones import create_backbone, list_backbones
from backbones.zoo.designed_cnns import DEPTHS, DENSE_UNITS, variant_name

VARIANTS = [(depth, pool, bn) for depth in DEPTHS for pool in ("max", "avg") for bn in (True, False)]


def test_the_registry_lists_every_variant_by_its_name():
    names = {n for n in list_backbones() if n.startswith("designed_cnn")}
    assert names == {variant_name(d, pool=p, batch_norm=b) for d, p, b in VARIANTS}
    assert {"designed_cnn4", "designed_cnn4_avgpool", "designed_cnn4_nobn", "designed_cnn4_avgpool_nobn"} <= names


@pytest.mark.parametrize("depth, pool, batch_norm", VARIANTS)
def test_variant_builds_forwards_and_has_exactly_its_layers(depth, pool, batch_norm):
    name = variant_name(depth, pool=pool, batch_norm=batch_norm)
    backbone = create_backbone(name, "scratch")
    assert backbone.name == name and len(backbone.layer_groups()) == depth + 1
    modules = list(backbone.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in modules) == batch_norm
    assert sum(isinstance(m, nn.MaxPool2d) for m in modules) == (depth if pool == "max" else 0)
    assert sum(isinstance(m, nn.AvgPool2d) for m in modules) == (depth if pool == "avg" else 0)
    assert all(m.bias is not None for m in modules if isinstance(m, nn.Conv2d)) == (not batch_norm)
    backbone.eval()
    for size in (64, backbone.input_config.min_size):
        out = backbone(torch.rand(2, 3, size, size))
        assert out.shape == (2, DENSE_UNITS) and torch.isfinite(out).all()


# Pinned before the pooling / batch-norm variants existed: (state tensors, their sum, output sum), seed 0.
BEFORE = {"designed_cnn1": (8, 53.393967, 11.964214), "designed_cnn4": (26, 978.006451, 3.782844),
          "designed_cnn6": (38, 1996.543655, 4.126448)}


@pytest.mark.parametrize("name", sorted(BEFORE))
def test_existing_names_build_the_same_network(name):
    torch.manual_seed(0)
    backbone = create_backbone(name, "scratch").eval()
    state = backbone.state_dict()
    x = torch.linspace(-1, 1, 2 * 3 * 64 * 64).reshape(2, 3, 64, 64)
    with torch.no_grad():
        got = (len(state), sum(float(v.double().sum()) for v in state.values() if v.is_floating_point()),
               float(backbone(x).double().sum()))
    assert got[0] == BEFORE[name][0] and got[1:] == pytest.approx(BEFORE[name][1:], abs=1e-5)

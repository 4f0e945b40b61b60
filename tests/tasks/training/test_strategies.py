"""Every registered strategy trains a tiny model; frozen parts stay bit-identical.

    .venv/bin/python -m pytest tests/tasks/training/test_strategies.py -q
"""

from __future__ import annotations

import pytest
import torch

from backbones import create_backbone
from tasks.data import load_task
from tasks.training import get_strategy, list_strategies, train_and_test
from tasks.training.strategies import StrategyNotApplicable


@pytest.fixture(scope="module")
def task():
    return load_task("gen-target", None, scale=0.5, size=32)


def _fit(task, name: str, epochs: int = 2, **overrides):
    torch.manual_seed(0)
    backbone = create_backbone("smallcnn", "scratch")
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    hp = get_strategy(name).resolve({"epochs": epochs, "batch_size": 16, **overrides})
    result = train_and_test(task, backbone, fold=0, k=3, seed=0, hp=hp, size=32, strategy=name, accelerator="cpu")
    return result, before


@pytest.mark.parametrize("name", list_strategies())
def test_strategy_trains_and_tests(task, name):
    strategy = get_strategy(name)
    assert strategy.summary
    if strategy.combines:  # ensembles train nothing: refused before any work, with the way to use them
        with pytest.raises(StrategyNotApplicable, match="beside the strategy of its members"):
            _fit(task, name)
        return
    result, _ = _fit(task, name)
    assert {"test/mcc", "test/auc", "test/acc"} <= set(result.metrics)
    assert all(torch.isfinite(torch.tensor(v)) for v in result.metrics.values())


def test_linear_probe_leaves_every_backbone_tensor_identical(task):
    result, before = _fit(task, "linear")
    after = result.module.backbone.state_dict()
    for key, value in before.items():  # weights and BatchNorm running statistics alike
        assert torch.equal(after[key], value), key


def test_full_fine_tuning_changes_the_backbone(task):
    result, before = _fit(task, "full")
    after = result.module.backbone.state_dict()
    assert any(not torch.equal(after[k], v) for k, v in before.items() if v.is_floating_point())


def test_layerwise_unfreezes_from_the_top_on_schedule(task):
    # 3 epochs, one group every epoch: epochs 1 and 2 unfreeze the top two groups; the rest stay frozen.
    # select last: the tested weights are the last epoch's, after both unfreezing steps.
    result, before = _fit(task, "layerwise", epochs=3, unfreeze_every=1, select="last")
    backbone = result.module.backbone
    after = backbone.state_dict()
    names = {id(p): n for n, p in backbone.named_parameters()}

    def changed(group) -> list[bool]:
        return [not torch.equal(after[names[id(p)]], before[names[id(p)]]) for p in group.parameters()]

    *rest, second, top = backbone.layer_groups()
    assert any(changed(top)) and any(changed(second))
    assert not any(c for group in rest for c in changed(group))

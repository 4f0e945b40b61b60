"""Every registered strategy trains a tiny model; frozen parts stay bit-identical.

    .venv/bin/python -m pytest tests/tasks/training/test_strategies.py -q
"""

from __future__ import annotations

import pytest
from lightning.pytorch.callbacks import Callback
import torch

from backbones import create_backbone
from tasks.data import load_task
from tasks.training import Machine, TrainPlan, get_strategy, list_strategies, train_and_test
from tasks.training.strategies import StrategyNotApplicable


@pytest.fixture(scope="module")
def task():
    return load_task("gen-target", None, scale=0.5, size=32)


def _fit(task, name: str, epochs: int = 2, **overrides):
    torch.manual_seed(0)
    backbone = create_backbone("smallcnn", "scratch")
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    hp = get_strategy(name).resolve({"epochs": epochs, "batch_size": 16, **overrides})
    result = train_and_test(task, backbone, TrainPlan(fold=0, k=3, seed=0, hp=hp, size=32, strategy=name), Machine(accelerator="cpu"))
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


class TrainableAtEpochStart(Callback):
    """The names of the parameters that train in each epoch (after the strategy's own epoch-start step)."""

    def __init__(self) -> None:
        self.by_epoch: dict[int, frozenset[str]] = {}

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.by_epoch[trainer.current_epoch] = frozenset(n for n, p in pl_module.named_parameters() if p.requires_grad)


def _layerwise_fit(task, folder, epochs: int, ckpt_path=None):
    import lightning.pytorch as L
    from lightning.pytorch.callbacks import ModelCheckpoint

    from tasks.data.datamodule import TaskDataModule
    from tasks.training.module import ClassifierModule
    from tasks.training.strategies.finetuning import LayerwiseUnfreeze

    L.seed_everything(0, verbose=False)
    backbone = create_backbone("smallcnn", "scratch")
    data = TaskDataModule(task, fold=0, k=3, seed=0, size=32, mean=backbone.input_config.mean,
                          std=backbone.input_config.std, batch_size=16, augment="none")
    module = ClassifierModule(backbone, task.meta)
    record = TrainableAtEpochStart()
    trainer = L.Trainer(max_epochs=epochs, accelerator="cpu", logger=False, enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=0,
                        callbacks=[LayerwiseUnfreeze(every=1), record, ModelCheckpoint(dirpath=folder, save_last=True)])
    trainer.fit(module, datamodule=data, ckpt_path=ckpt_path)
    return record, trainer


def test_a_resumed_layerwise_cell_continues_in_the_same_phase_with_the_same_frozen_set(task, tmp_path):
    straight, straight_trainer = _layerwise_fit(task, tmp_path / "straight", epochs=4)
    _layerwise_fit(task, tmp_path / "killed", epochs=2)  # "killed" after epoch 2: its last checkpoint remains
    resumed, resumed_trainer = _layerwise_fit(task, tmp_path / "resumed", epochs=4, ckpt_path=tmp_path / "killed" / "last.ckpt")
    assert sorted(resumed.by_epoch) == [2, 3]
    for epoch in (2, 3):  # the same phase: exactly the same parameters train
        assert resumed.by_epoch[epoch] == straight.by_epoch[epoch], epoch
    assert straight.by_epoch[1] < straight.by_epoch[2] < straight.by_epoch[3]  # the schedule did unfreeze
    assert [len(g["params"]) for g in resumed_trainer.optimizers[0].param_groups] == [
        len(g["params"]) for g in straight_trainer.optimizers[0].param_groups]

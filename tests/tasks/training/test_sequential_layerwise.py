"""`layerwise-sequential`: per phase exactly the intended parameters train; lrs decay; a resume keeps the phase.

    .venv/bin/python -m pytest tests/tasks/training/test_sequential_layerwise.py -q -p no:cacheprovider
"""

from __future__ import annotations

import lightning.pytorch as L
import pytest
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from backbones import create_backbone
from tasks.data import load_task
from tasks.data.datamodule import TaskDataModule
from tasks.training import get_strategy
from tasks.training.module import ClassifierModule
from tasks.training.strategies.sequential import SequentialLayerwise, sequential_phase


@pytest.fixture(scope="module")
def task():
    return load_task("gen-target", None, scale=0.5, size=32)


def test_phases_split_the_steps_evenly_and_reach_every_group_at_short_budgets():
    # 12 steps over head + 4 groups: 12 * p / 5 -> boundaries at steps 3, 5, 8, 10.
    got = [sequential_phase(epoch=0, step=s, phases=5, total_steps=12, phase_epochs=0) for s in range(12)]
    assert got == [0, 0, 0, 1, 1, 2, 2, 2, 3, 3, 4, 4]
    # A 4-epoch cell of one step an epoch with 3 groups: one phase per epoch, every group visited.
    assert [sequential_phase(epoch=e, step=e, phases=4, total_steps=4, phase_epochs=0) for e in range(4)] == [0, 1, 2, 3]
    # phase_epochs: k epochs a phase, the last one kept to the end.
    assert [sequential_phase(epoch=e, step=0, phases=3, total_steps=1, phase_epochs=2) for e in range(8)] == [
        0, 0, 1, 1, 2, 2, 2, 2]


def test_registered_with_its_hyperparameters():
    strategy = get_strategy("layerwise-sequential")
    assert strategy.resolve({})["group_lr_decay"] == 0.5 and strategy.resolve({})["phase_epochs"] == 0
    (callback,) = strategy.build_callbacks(strategy.resolve({"group_lr_decay": 0.25, "phase_epochs": 2}))
    assert isinstance(callback, SequentialLayerwise) and callback.group_lr_decay == 0.25 and callback.phase_epochs == 2
    with pytest.raises(ValueError, match="group_lr_decay"):
        strategy.resolve({"group_lr_decay": 2.0})


class PhaseRecorder(Callback):
    """At every training step: the trainable parameter names, the param groups' lrs, and snapshots at phase changes."""

    def __init__(self) -> None:
        self.trainable: dict[int, frozenset[str]] = {}  # global step -> names with requires_grad
        self.lrs: dict[int, list[float]] = {}
        self.snapshots: list[tuple[frozenset[str], dict[str, torch.Tensor]]] = []  # (trainable, state at its start)

    def _state(self, pl_module) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in pl_module.state_dict().items()}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        names = frozenset(n for n, p in pl_module.named_parameters() if p.requires_grad)
        self.trainable[trainer.global_step] = names
        self.lrs[trainer.global_step] = [g["lr"] for g in trainer.optimizers[0].param_groups]
        if not self.snapshots or self.snapshots[-1][0] != names:
            self.snapshots.append((names, self._state(pl_module)))

    def on_train_end(self, trainer, pl_module) -> None:
        self.final = self._state(pl_module)


class StopAfter(Callback):
    """Ends the fit after `epochs` epochs, as a killed job would (the plan, and its checkpoint, still say max_epochs)."""

    def __init__(self, epochs: int) -> None:
        self.epochs = epochs

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if trainer.current_epoch + 1 >= self.epochs:
            trainer.should_stop = True


def _fit(task, folder, *, epochs=4, schedule="none", warmup=0, decay=0.5, ckpt_path=None, stop_after=None):
    L.seed_everything(0, verbose=False)
    backbone = create_backbone("smallcnn", "scratch")
    data = TaskDataModule(task, fold=0, k=3, seed=0, size=32, mean=backbone.input_config.mean,
                          std=backbone.input_config.std, batch_size=16, augment="none")
    module = ClassifierModule(backbone, task.meta, schedule=schedule, warmup_epochs=warmup)
    record = PhaseRecorder()
    callbacks = [SequentialLayerwise(group_lr_decay=decay), record, ModelCheckpoint(dirpath=folder, save_last=True)]
    trainer = L.Trainer(max_epochs=epochs, accelerator="cpu", logger=False, enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=0,
                        callbacks=callbacks + ([StopAfter(stop_after)] if stop_after else []))
    trainer.fit(module, datamodule=data, ckpt_path=ckpt_path)
    return record, trainer, module


def _phase_names(module) -> list[frozenset[str]]:
    """Trainable names of each phase: the head alone, then head + one group from the top down."""
    head = frozenset(n for n, _ in module.named_parameters() if n.startswith("head."))
    names = {id(p): n for n, p in module.named_parameters()}
    groups = module.backbone.layer_groups()
    return [head] + [head | {names[id(p)] for p in g.parameters()} for g in reversed(groups)]


def test_each_phase_trains_exactly_its_group_and_the_head(task, tmp_path):
    record, _, module = _fit(task, tmp_path)
    expected = _phase_names(module)
    assert [names for names, _ in record.snapshots] == expected  # every phase reached, in order, in 4 epochs
    ends = [state for _, state in record.snapshots[1:]] + [record.final]
    groups = module.backbone.layer_groups()
    names = {id(p): n for n, p in module.named_parameters()}
    buffers = {id(m): n for n, m in module.named_modules()}
    for phase, ((trainable, start), end) in enumerate(zip(record.snapshots, ends)):
        changed = {k for k, v in start.items() if v.is_floating_point() and not torch.equal(v, end[k])}
        params = {n for n, _ in module.named_parameters()}
        assert changed & params == trainable, phase  # trainable ones moved, frozen ones bit-equal
        # BatchNorm running statistics move only in the group that trains.
        moving = {k.rsplit(".", 1)[0] for k in changed - params}
        group = groups[len(groups) - phase] if phase else None
        own = {f"{buffers[id(m)]}" for m in group.modules()} if group is not None else set()
        assert moving <= own, (phase, moving)
        assert not any(names[id(p)] in trainable for g in groups if g is not group for p in g.parameters())


@pytest.mark.parametrize("schedule, warmup", [("none", 0), ("step", 0), ("cosine", 1)])
def test_group_learning_rates_follow_the_decay_under_every_schedule(task, tmp_path, schedule, warmup):
    record, trainer, module = _fit(task, tmp_path, schedule=schedule, warmup=warmup, decay=0.5)
    n_groups = len(module.backbone.layer_groups())
    groups = trainer.optimizers[0].param_groups
    assert len(groups) == 1 + n_groups
    for step, lrs in record.lrs.items():
        assert lrs[1:] == pytest.approx([lrs[0] * 0.5**i for i in range(n_groups)], rel=1e-9), (schedule, step)
    if schedule != "none":  # the schedule did move the learning rates, and moved them all
        assert record.lrs[max(record.lrs)][0] != pytest.approx(record.lrs[0][0])


def test_a_fit_resumed_mid_phase_continues_in_the_same_phase(task, tmp_path):
    straight, straight_trainer, _ = _fit(task, tmp_path / "straight")
    killed, _, _ = _fit(task, tmp_path / "killed", stop_after=2)
    resumed, resumed_trainer, module = _fit(task, tmp_path / "resumed", ckpt_path=tmp_path / "killed" / "last.ckpt")
    first = min(resumed.trainable)
    assert first == max(killed.trainable) + 1  # resumed where the killed fit stopped
    phases = _phase_names(module)
    phase = phases.index(resumed.trainable[first])
    assert 0 < phase < len(phases) - 1 and straight.trainable[first - 1] == straight.trainable[first]  # mid-phase
    assert killed.trainable[first - 1] == resumed.trainable[first]  # the phase the killed fit was in
    for step in resumed.trainable:  # then the same schedule as a fit that was never stopped
        assert resumed.trainable[step] == straight.trainable[step], step
    state = torch.load(tmp_path / "killed" / "last.ckpt", weights_only=False)["callbacks"]
    (saved,) = [v for k, v in state.items() if "SequentialLayerwise" in k]
    assert saved["phase"] == phase and saved["total_steps"] == straight_trainer.estimated_stepping_batches
    assert [len(g["params"]) for g in resumed_trainer.optimizers[0].param_groups] == [
        len(g["params"]) for g in straight_trainer.optimizers[0].param_groups]

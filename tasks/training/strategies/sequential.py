"""Sinha et al. 2019's layer-wise run: one layer group trains at a time, the others frozen.

  layerwise-sequential
      phase 0 trains the new head alone (the backbone frozen, BatchNorm statistics included);
      phase p = 1..G then trains backbone layer group G - p, the top group first and the input
      group last, with every other group frozen again. Group i (0 = the input side) trains at
      `lr * group_lr_decay ** i`: the higher the layer, the lower its learning rate, as the paper's
      run 2 says ("lower learning rate for higher layers"; `group_lr_decay: 1.0` trains every group
      at `lr`). The head keeps training, at `lr`, in every phase: the paper's "others frozen" are
      the ResNet50 layers it fine-tunes, and its new head (conv + dense + dropout) is the part that
      fits the new labels, as in the Keras layer-wise recipe it follows.

Phase lengths (`phase_epochs`): 0 splits the fit's optimiser steps evenly over the G + 1 phases,
so every phase is reached whenever the fit has at least G + 1 steps (a 4-epoch cell visits every
group, which the cumulative `layerwise` does not); k > 0 gives each phase k epochs and keeps
the last phase reached until the end (phases past the budget are not reached).

Every group is in the optimiser from the first epoch, each in its own param group at its own
learning rate; a phase change only sets `requires_grad` (and BatchNorm's `track_running_stats`), and
a frozen parameter has no gradient, so no optimiser (weight decay and momentum included) moves it.
Schedules scale every group alike (their `base_lrs` are extended with the groups'), so the ratios
between groups hold for the whole fit. Backbone parameters outside every layer group stay frozen.

A resumed fit (`ckpt_path=`) continues in the phase it was in: the callback's state holds the
phase and the step count the phases were split over, and Lightning's BaseFinetuning restores the
param groups before the optimiser state is loaded.
"""

from __future__ import annotations

import math
from typing import Any

from lightning.pytorch.callbacks import BaseFinetuning, Callback

from tasks.training.hparams import HParam
from tasks.training.strategies import register_strategy


def sequential_phase(*, epoch: int, step: int, phases: int, total_steps: int, phase_epochs: int) -> int:
    """The phase (0 = head only, p = the p-th group from the top) at `epoch` / optimiser `step`."""
    if phase_epochs > 0:
        return min(phases - 1, epoch // phase_epochs)
    return min(phases - 1, step * phases // max(1, total_steps))


class SequentialLayerwise(BaseFinetuning):
    """One backbone layer group trains at a time, from the top down (see the module docstring)."""

    def __init__(self, *, group_lr_decay: float = 0.5, phase_epochs: int = 0) -> None:
        super().__init__()
        self.group_lr_decay = float(group_lr_decay)
        self.phase_epochs = int(phase_epochs)
        self.phase = -1  # the phase whose parameters train now; -1 before the first epoch
        self.total_steps = 0  # optimiser steps the phases are split over (kept across a resume)
        self._trainer = None
        self._applied: int | None = None  # the phase the module's flags are set for in this process

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "phase": self.phase, "total_steps": self.total_steps}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self.phase = int(state_dict.get("phase", -1))
        self.total_steps = int(state_dict.get("total_steps", 0))

    def freeze_before_training(self, pl_module) -> None:
        self.freeze(pl_module.backbone, train_bn=False)
        self._applied = None  # a resume's setup froze the group of the phase it resumes in

    def on_fit_start(self, trainer, pl_module) -> None:
        if not self.total_steps:  # a fresh fit; a resumed one keeps the split it started with
            steps = trainer.estimated_stepping_batches
            if self.phase_epochs == 0 and not math.isfinite(steps):
                raise ValueError("layerwise-sequential splits the fit's steps over its phases, but this fit has no "
                                 "step budget; set max_epochs (epochs) or phase_epochs > 0.")
            self.total_steps = int(steps) if math.isfinite(steps) else 0
        self._trainer = trainer
        super().on_fit_start(trainer, pl_module)  # on a resume: the param groups of the checkpoint

    def finetune_function(self, pl_module, current_epoch, optimizer) -> None:
        self._add_groups(pl_module, optimizer)
        self._enter(pl_module, self._phase_now(pl_module))

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._enter(pl_module, self._phase_now(pl_module))

    def group_lr_factors(self, n_groups: int) -> list[float]:
        """Learning rate of each layer group (input side first) relative to the head's."""
        return [self.group_lr_decay ** i for i in range(n_groups)]

    def _phase_now(self, pl_module) -> int:
        trainer = self._trainer
        phase = sequential_phase(epoch=trainer.current_epoch, step=trainer.global_step,
                                 phases=len(pl_module.backbone.layer_groups()) + 1, total_steps=self.total_steps,
                                 phase_epochs=self.phase_epochs)
        # Phases only go down the network: a resume never returns to a group it has finished.
        return max(phase, self.phase)

    def _add_groups(self, pl_module, optimizer) -> None:
        """Each layer group as its own param group, at its learning rate (once; a resume has them already)."""
        inside = {id(p) for g in optimizer.param_groups for p in g["params"]}
        head = optimizer.param_groups[0]
        groups = pl_module.backbone.layer_groups()
        for group, factor in zip(groups, self.group_lr_factors(len(groups))):
            params = [p for p in group.parameters() if id(p) not in inside]
            if not params:
                continue
            # Relative to the head's lr now (a warm-up may have scaled it) and its initial one (cosine's base).
            base = head.get("initial_lr", head["lr"]) * factor
            optimizer.add_param_group({"params": params, "lr": head["lr"] * factor, "initial_lr": base})
            for config in self._trainer.lr_scheduler_configs:
                _extend_schedule(config.scheduler, base, head["lr"] * factor)

    def _enter(self, pl_module, phase: int) -> None:
        if phase == self._applied:
            return
        groups = pl_module.backbone.layer_groups()
        training = groups[len(groups) - phase] if phase > 0 else None
        for group in groups:
            if group is training:
                self.make_trainable(group)
                continue
            self.freeze(group, train_bn=False)
            for p in group.parameters():
                p.grad = None  # a group left mid-accumulation must not be stepped with stale gradients
        self.phase = self._applied = phase


def _extend_schedule(scheduler, base_lr: float, lr: float) -> None:
    """Give a scheduler (and the ones it chains) one more param group: initial `base_lr`, now at `lr`."""
    for name, value in (("base_lrs", base_lr), ("_last_lr", lr)):
        values = getattr(scheduler, name, None)
        if isinstance(values, list):
            values.append(value)
    min_lrs = getattr(scheduler, "min_lrs", None)  # ReduceLROnPlateau
    if isinstance(min_lrs, list) and min_lrs:
        min_lrs.append(min_lrs[0])
    for child in getattr(scheduler, "_schedulers", ()):  # SequentialLR, ChainedScheduler
        _extend_schedule(child, base_lr, lr)


@register_strategy(
    "layerwise-sequential",
    summary="layer-wise (Sinha et al. 2019 run 2): head, then one layer group at a time from the top, others frozen",
    params={
        "group_lr_decay": HParam(0.5, float, "lr of layer group i (0 = input side) is lr * group_lr_decay**i: "
                                 "higher layers train slower", low=1e-6, high=1.0,
                                 space=lambda trial, name: trial.suggest_float(name, 0.1, 1.0, log=True)),
        "phase_epochs": HParam(0, int, "epochs per phase (0: the fit's steps split evenly over head + every group)",
                               low=0),
    },
)
def layerwise_sequential(*, group_lr_decay: float, phase_epochs: int) -> list[Callback]:
    return [SequentialLayerwise(group_lr_decay=group_lr_decay, phase_epochs=phase_epochs)]

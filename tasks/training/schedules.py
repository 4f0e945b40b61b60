"""Optimisers and learning-rate schedules, stepped once per epoch.

  none     constant learning rate
  step     x0.1 at 50 % and 75 % of the epochs (MedMNIST v2's baselines)
  cosine   linear warm-up from lr/10 over `warmup_epochs`, then cosine annealing to 0 at the last epoch
  plateau  x0.1 when `val/loss` has not improved for 2 epochs (torch's ReduceLROnPlateau)

Optimisers: adam, adamw, sgd (momentum 0.9, nesterov off), rmsprop (Rahman's choice; torch defaults,
alpha 0.99).
"""

from __future__ import annotations

import torch

OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")
SCHEDULES = ("none", "step", "cosine", "plateau")
PLATEAU_PATIENCE = 2  # epochs without a better val/loss before the learning rate drops
FACTOR = 0.1  # the drop of step and plateau


def build_optimizer(name: str, params, *, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"Unknown optimizer {name!r}. Valid optimizers: {', '.join(OPTIMIZERS)}.")


def step_milestones(epochs: int) -> list[int]:
    """Epochs (0-based) from which the step schedule's drops apply: 50 % and 75 % of the run."""
    return sorted({max(1, round(epochs * 0.5)), max(1, round(epochs * 0.75))})


def build_schedule(name: str, optimizer: torch.optim.Optimizer, *, epochs: int, warmup_epochs: int = 0):
    """The Lightning `lr_scheduler` config for `name`, or None for a constant learning rate."""
    sched = torch.optim.lr_scheduler
    if name == "none":
        return None
    if name == "step":
        return {"scheduler": sched.MultiStepLR(optimizer, step_milestones(epochs), gamma=FACTOR), "interval": "epoch"}
    if name == "cosine":
        warmup = min(int(warmup_epochs), max(epochs - 1, 0))
        cosine = sched.CosineAnnealingLR(optimizer, T_max=max(epochs - warmup, 1))
        if not warmup:
            return {"scheduler": cosine, "interval": "epoch"}
        ramp = sched.LinearLR(optimizer, start_factor=0.1, end_factor=1.0, total_iters=warmup)
        return {"scheduler": sched.SequentialLR(optimizer, [ramp, cosine], milestones=[warmup]), "interval": "epoch"}
    if name == "plateau":
        plateau = sched.ReduceLROnPlateau(optimizer, mode="min", factor=FACTOR, patience=PLATEAU_PATIENCE)
        return {"scheduler": plateau, "interval": "epoch", "monitor": "val/loss"}
    raise ValueError(f"Unknown schedule {name!r}. Valid schedules: {', '.join(SCHEDULES)}.")

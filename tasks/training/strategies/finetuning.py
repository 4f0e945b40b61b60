"""Strategies that fine-tune through Lightning: full, linear probe, layer-wise unfreezing.

  full       every layer trains from the first epoch (fine-tuning, or from scratch with 'scratch' weights)
  linear     the backbone is frozen, BatchNorm statistics included; only the new head trains
             (a linear probe on "off-the-shelf" features)
  layerwise  start with the backbone frozen, then unfreeze one layer group from the top every
             `unfreeze_every` epochs, each at `lr * unfreeze_lr_factor`; groups stay unfrozen
             (cumulative). Its first unfreezing is at epoch `unfreeze_every`, so a fit of
             `unfreeze_every` epochs or fewer never leaves the head-only phase, and one of E epochs
             reaches at most (E - 1) // unfreeze_every groups. Kept as it is: cells' hashes name it.
  layerwise-sequential
             Sinha et al. 2019's run 2, one layer group at a time (`tasks.training.strategies.sequential`).
"""

from __future__ import annotations

from lightning.pytorch.callbacks import BaseFinetuning, Callback

from tasks.training.hparams import HParam
from tasks.training.strategies import register_strategy


class FrozenBackbone(BaseFinetuning):
    """Keep the whole backbone frozen (BatchNorm statistics included) for the entire fit."""

    def freeze_before_training(self, pl_module) -> None:
        self.freeze(pl_module.backbone, train_bn=False)

    def finetune_function(self, pl_module, current_epoch, optimizer) -> None:
        return


class LayerwiseUnfreeze(BaseFinetuning):
    """Unfreeze the backbone's layer groups from the top, one every `every` epochs."""

    def __init__(self, every: int = 1, lr_factor: float = 0.1) -> None:
        super().__init__()
        self.every = max(1, int(every))
        self.lr_factor = lr_factor

    def freeze_before_training(self, pl_module) -> None:
        self.freeze(pl_module.backbone, train_bn=False)

    def on_fit_start(self, trainer, pl_module) -> None:
        # Resuming from a checkpoint: Lightning restores the optimizer's param groups here, but
        # `setup` has just frozen the whole backbone again (Lightning issue 21901), so the groups
        # unfrozen before the checkpoint would silently stop training. The epoch to resume at is
        # only known once the loops are restored, at the first epoch start.
        self._resuming = self._restarting
        super().on_fit_start(trainer, pl_module)

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if getattr(self, "_resuming", False):
            self._resuming = False
            groups = pl_module.backbone.layer_groups()
            for epoch in range(1, trainer.current_epoch):
                step = self._step(epoch)
                if step and step <= len(groups):
                    self.make_trainable(groups[-step])
        super().on_train_epoch_start(trainer, pl_module)

    def _step(self, epoch: int) -> int:
        """Which group epoch `epoch` unfreezes: 1 the top one, 2 the next one down...; 0 none."""
        return 0 if epoch == 0 or epoch % self.every else epoch // self.every

    def finetune_function(self, pl_module, current_epoch, optimizer) -> None:
        step = self._step(current_epoch)
        if not step:
            return
        groups = pl_module.backbone.layer_groups()
        if step <= len(groups):
            base_lr = optimizer.param_groups[0]["lr"]
            self.unfreeze_and_add_param_group(
                groups[-step], optimizer, lr=base_lr * self.lr_factor, train_bn=True, initial_denom_lr=1.0
            )


@register_strategy("full", summary="fine-tune every layer with a new head (Hicks et al.); from scratch with source none")
def full() -> list[Callback]:
    return []


@register_strategy("linear", summary="linear probe: frozen backbone and BatchNorm statistics, new head only")
def linear() -> list[Callback]:
    return [FrozenBackbone()]


@register_strategy(
    "layerwise",
    summary="layer-wise fine-tuning (Sinha et al.): head first, then layer groups unfrozen from the top",
    params={
        "unfreeze_every": HParam(1, int, "epochs between unfreezing two layer groups", low=1,
                                 space=lambda trial, name: trial.suggest_int(name, 1, 3)),
        "unfreeze_lr_factor": HParam(0.1, float, "learning rate of an unfrozen group, relative to lr", low=1e-6, high=1.0,
                                     space=lambda trial, name: trial.suggest_float(name, 0.01, 1.0, log=True)),
    },
)
def layerwise(*, unfreeze_every: int, unfreeze_lr_factor: float) -> list[Callback]:
    return [LayerwiseUnfreeze(unfreeze_every, unfreeze_lr_factor)]

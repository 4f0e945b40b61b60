"""Transfer strategies that train, as Lightning callbacks (schedules are callbacks, not `if epoch`).

  full       every layer trains from the first epoch (fine-tuning, or from scratch with 'scratch' weights)
  linear     the backbone is frozen; only the new head trains (linear probe, "off-the-shelf" features)
  layerwise  Sinha et al.: start with the backbone frozen, then unfreeze one layer group from the
             top every `unfreeze_every` epochs, each at `lr * unfreeze_lr_factor`
"""

from __future__ import annotations

from collections.abc import Callable

from lightning.pytorch.callbacks import BaseFinetuning, Callback

_REGISTRY: dict[str, Callable[..., list[Callback]]] = {}


def register_strategy(name: str):
    def decorate(fn):
        _REGISTRY[name] = fn
        return fn

    return decorate


def list_strategies() -> list[str]:
    return sorted(_REGISTRY)


def strategy_callbacks(name: str, **hparams) -> list[Callback]:
    if name not in _REGISTRY:
        raise ValueError(f"Unknown strategy {name!r}. Valid strategies: {', '.join(list_strategies())}.")
    return _REGISTRY[name](**hparams)


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

    def finetune_function(self, pl_module, current_epoch, optimizer) -> None:
        if current_epoch == 0 or current_epoch % self.every:
            return
        groups = pl_module.backbone.layer_groups()
        step = current_epoch // self.every  # 1 -> the top group, 2 -> the next one down, ...
        if step <= len(groups):
            base_lr = optimizer.param_groups[0]["lr"]
            self.unfreeze_and_add_param_group(
                groups[-step], optimizer, lr=base_lr * self.lr_factor, train_bn=True, initial_denom_lr=1.0
            )


@register_strategy("full")
def full(**_: object) -> list[Callback]:
    return []


@register_strategy("linear")
def linear(**_: object) -> list[Callback]:
    return [FrozenBackbone()]


@register_strategy("layerwise")
def layerwise(*, unfreeze_every: int = 1, unfreeze_lr_factor: float = 0.1, **_: object) -> list[Callback]:
    return [LayerwiseUnfreeze(unfreeze_every, unfreeze_lr_factor)]

"""Inference cost of a tested model: parameters and FLOPs per image, counted by torch, not from a table.

    medtl benchmark benchmark/suites/smoke.yaml     # each fine-tuning cell logs cost/params and cost/flops_per_image

FLOPs come from `torch.utils.flop_counter.FlopCounterMode` on one forward pass of a single
image at the cell's input size (a multiply-add counts as 2 FLOPs, torch's convention). Layers
torch does not count (pooling, activations) add little next to convolutions and matmuls.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.inference_mode()
def flops_per_image(model: nn.Module, image_size: int, channels: int = 3) -> int:
    """FLOPs of one forward pass on one `channels` x `image_size` x `image_size` image, in eval mode."""
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
    except StopIteration:
        device = torch.device("cpu")
    counter = FlopCounterMode(display=False)
    try:
        with counter:
            model(torch.zeros(1, channels, image_size, image_size, device=device))
    finally:
        model.train(was_training)
    return int(counter.get_total_flops())


def model_cost(model: nn.Module, image_size: int) -> dict[str, float]:
    """The cell's cost metrics: `cost/params` and `cost/flops_per_image` (NaN where the forward cannot be counted)."""
    try:
        flops = float(flops_per_image(model, image_size))
    except Exception:  # noqa: BLE001 - a strategy whose forward leaves torch (e.g. a scikit-learn head) is not counted, and the cell still finishes
        flops = float("nan")
    return {"cost/params": float(parameter_count(model)), "cost/flops_per_image": flops}

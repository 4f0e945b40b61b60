"""Inference throughput (FPS) with its conditions, timm `benchmark.py` style.

Warm-up batches first (allocator, cuDNN autotuning, CPU caches), synchronise before reading the
clock on accelerators, then time whole batches of random input at the cell's image size. Pure
model forward: decoding and transforms are excluded (they are reported separately as the test
loop's pipeline FPS).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class Throughput:
    fps: float  # images per second over the timed batches
    batch_size: int  # images per forward pass
    image_size: int  # square side in pixels
    precision: str  # Lightning precision flag the forward ran under
    device: str  # "cpu" or "cuda:<name>"
    threads: int  # torch intra-op threads (CPU throughput scales with them)
    warmup: int  # untimed batches before timing
    batches: int  # timed batches

    def params(self) -> dict[str, str]:
        return {f"throughput.{k}": str(v) for k, v in asdict(self).items() if k != "fps"}


def _autocast(device: torch.device, precision: str):
    if precision.startswith("bf16"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if precision.startswith("16"):
        return torch.autocast(device.type, dtype=torch.float16)
    return torch.autocast(device.type, enabled=False)


@torch.inference_mode()
def measure_fps(model: nn.Module, *, image_size: int, batch_size: int = 32, warmup: int = 3, batches: int = 10, precision: str = "32-true", device: str | None = None) -> Throughput:
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    was_training = model.training
    model = model.to(dev).eval()
    x = torch.randn(batch_size, 3, image_size, image_size, device=dev)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    with _autocast(dev, precision):
        for _ in range(warmup):
            model(x)
        sync()
        start = time.perf_counter()
        for _ in range(batches):
            model(x)
        sync()
        elapsed = time.perf_counter() - start
    model.train(was_training)
    name = f"cuda:{torch.cuda.get_device_name(dev)}" if dev.type == "cuda" else "cpu"
    return Throughput(batch_size * batches / elapsed, batch_size, image_size, precision, name, torch.get_num_threads(), warmup, batches)

"""Throughput as a measured result with its conditions, timm `benchmark.py` style.

    medtl throughput --backbones resnet18 --image-size 64 --batch-sizes 1,8,32   # CSV in reports/throughput/

Warm-up batches first (allocator, cuDNN autotuning, CPU caches), synchronise before reading the
clock on accelerators, then time whole batches of random input at the cell's image size. Pure
model work: decoding and transforms are excluded (the test loop's pipeline FPS and
`benchmark/speed/pipeline_bench.py` measure them). Inference runs under `torch.inference_mode` (`no_grad` under autocast: `_no_autograd`) in the
memory format the model trains in (`tasks.training.speed`: channels_last for convnets by
default); training img/s times forward + backward + optimizer step on a copy of the model.
FLOPs per image come from `benchmark.speed.cost` (torch's FLOP counter); the fraction of peak uses a
table of GPU peaks, or on a CPU an estimate (FLOPs/cycle of the ISA x cores x GHz), said so.
"""

from __future__ import annotations

import copy
import os
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from tasks.training.speed import cpu_flags, resolve_memory_format, torch_format

# Dense peak TFLOP/s (no sparsity) from the vendors' data sheets: (fp32 incl. TF32 off, bf16/fp16 tensor cores).
GPU_PEAK_TFLOPS = {
    "H200": (67.0, 989.0), "H100": (67.0, 989.0), "A100": (19.5, 312.0), "V100": (15.7, 125.0),
    "T4": (8.1, 65.0), "L4": (30.3, 121.0), "A10": (31.2, 125.0), "RTX 4090": (82.6, 165.0),
    "RTX 3090": (35.6, 71.0), "RTX A6000": (38.7, 155.0),
}


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
    memory_format: str = "contiguous"  # layout of weights and input (channels_last | contiguous)
    compiled: bool = False  # torch.compile'd forward

    def params(self) -> dict[str, str]:
        return {f"throughput.{k}": str(v) for k, v in asdict(self).items() if k != "fps"}


@dataclass(frozen=True)
class Peak:
    flops: float  # FLOP/s of the device at the precision used (nan when unknown)
    source: str  # where the number comes from; "estimate: ..." on CPUs


def _no_autograd(precision: str):
    """inference_mode, except under autocast: there it makes autocast re-cast every fp32 weight on every
    batch (its cast cache keeps only casts of tensors that require grad, which inference_mode hides), so
    a loop inside one autocast region runs slower than under no_grad (VGG-16, bf16, batch 4 on this
    CPU: 9.0-9.5 against 11.9-12.1 img/s, the 25088 x 4096 head re-cast each time). Both record no graph."""
    mixed = precision.startswith(("bf16", "16")) and not precision.endswith("-true")
    return torch.no_grad() if mixed else torch.inference_mode()


def _autocast(device: torch.device, precision: str):
    if precision.startswith("bf16"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if precision.startswith("16"):
        return torch.autocast(device.type, dtype=torch.float16)
    return torch.autocast(device.type, enabled=False)


def _device(device: str | None) -> torch.device:
    return torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))


def device_name(dev: torch.device) -> str:
    return f"cuda:{torch.cuda.get_device_name(dev)}" if dev.type == "cuda" else "cpu"


def _sync(dev: torch.device):
    return torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)


def _prepare(model: nn.Module, dev: torch.device, memory_format: str, compile: bool):
    layout = resolve_memory_format(memory_format, model)
    model = model.to(dev).to(memory_format=torch_format(layout))
    return (torch.compile(model) if compile else model), layout


def measure_fps(model: nn.Module, *, image_size: int, batch_size: int = 32, warmup: int = 3, batches: int = 10,
                precision: str = "32-true", device: str | None = None, memory_format: str = "auto",
                compile: bool = False) -> Throughput:
    """Inference img/s of `model` on random input (eval mode, inference_mode or under autocast no_grad:
    `_no_autograd`; the model's mode is restored)."""
    dev = _device(device)
    was_training = model.training
    model.eval()
    run, layout = _prepare(model, dev, memory_format, compile)
    x = torch.randn(batch_size, 3, image_size, image_size, device=dev).contiguous(memory_format=torch_format(layout))
    sync = _sync(dev)
    with _no_autograd(precision), _autocast(dev, precision):
        for _ in range(warmup):
            run(x)
        sync()
        start = time.perf_counter()
        for _ in range(batches):
            run(x)
        sync()
        elapsed = time.perf_counter() - start
    model.train(was_training)
    return Throughput(batch_size * batches / elapsed, batch_size, image_size, precision, device_name(dev),
                      torch.get_num_threads(), warmup, batches, layout, compile)


def measure_latency(model: nn.Module, *, image_size: int, warmup: int = 3, repeats: int = 20, precision: str = "32-true",
                    device: str | None = None, memory_format: str = "auto") -> dict[str, float]:
    """Batch-1 latency percentiles in milliseconds ({"p50_ms", "p95_ms"})."""
    dev = _device(device)
    was_training = model.training
    model.eval()
    run, layout = _prepare(model, dev, memory_format, False)
    x = torch.randn(1, 3, image_size, image_size, device=dev).contiguous(memory_format=torch_format(layout))
    sync, times = _sync(dev), []
    with _no_autograd(precision), _autocast(dev, precision):
        for i in range(warmup + repeats):
            start = time.perf_counter()
            run(x)
            sync()
            if i >= warmup:
                times.append((time.perf_counter() - start) * 1e3)
    model.train(was_training)
    cuts = statistics.quantiles(times, n=20, method="inclusive")  # 5 % steps: cuts[9] = p50, cuts[18] = p95
    return {"p50_ms": cuts[9], "p95_ms": cuts[18]}


def training_step_fn(model: nn.Module, optimizer: torch.optim.Optimizer, dev: torch.device, precision: str):
    """One forward + backward + optimizer step on (x, y), as Lightning's automatic optimisation does it."""
    loss_fn = nn.CrossEntropyLoss()

    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        optimizer.zero_grad(set_to_none=True)
        with _autocast(dev, precision):
            loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()

    return step


def training_net(model: nn.Module, image_size: int, num_classes: int) -> nn.Module:
    """A copy of `model` plus a linear head, in training mode (the original is left untouched)."""
    body = copy.deepcopy(model).eval()
    with torch.no_grad():  # the width of the features the head reads
        width = body(torch.zeros(1, 3, image_size, image_size)).flatten(1).shape[1]
    return nn.Sequential(body, nn.Flatten(), nn.Linear(width, num_classes)).train()


def measure_training(model: nn.Module, *, image_size: int, batch_size: int = 32, warmup: int = 2, batches: int = 5,
                     precision: str = "32-true", device: str | None = None, memory_format: str = "auto",
                     num_classes: int = 10, compile: bool = False) -> float:
    """Training img/s (forward + backward + Adam step) of a copy of `model` plus a linear head, on random tensors
    (`compile`: through torch.compile, as a suite's `throughput.compile` trains; the warm-up pays the compilation)."""
    dev = _device(device)
    net, layout = _prepare(training_net(model, image_size, num_classes), dev, memory_format, compile)
    x = torch.randn(batch_size, 3, image_size, image_size, device=dev).contiguous(memory_format=torch_format(layout))
    y = torch.randint(0, num_classes, (batch_size,), device=dev)
    step = training_step_fn(net, torch.optim.Adam(net.parameters(), lr=1e-4), dev, precision)
    sync = _sync(dev)
    for _ in range(warmup):
        step(x, y)
    sync()
    start = time.perf_counter()
    for _ in range(batches):
        step(x, y)
    sync()
    return batch_size * batches / (time.perf_counter() - start)


def _cpu_ghz() -> float:
    try:
        mhz = [float(line.split(":")[1]) for line in open("/proc/cpuinfo") if line.startswith("cpu MHz")]
    except OSError:
        mhz = []
    return (max(mhz) / 1000) if mhz else float("nan")


def cpu_flops_per_cycle(precision: str) -> int:
    """fp32 FLOPs per cycle per core of the detected ISA: 2 FMA ports x lanes x 2 (multiply + add).

    An upper bound: AMD Zen 4 runs AVX-512 on 256-bit units (half this), and bf16 counts as fp32
    unless AVX512-BF16/AMX (which doubles it) is present. Hand-rolled because no maintained library
    reports peak FLOPs from cpuinfo."""
    flags = cpu_flags()
    per_cycle = 64 if "avx512f" in flags else 32 if {"avx2", "fma"} <= flags else 8
    if precision.startswith("bf16") and flags & {"avx512_bf16", "amx_bf16"}:
        per_cycle *= 2
    return per_cycle


def device_peak(device: str, precision: str = "32-true", threads: int | None = None) -> Peak:
    """Peak FLOP/s of `device` ("cpu" or "cuda:<name>") at `precision`; nan with the reason when unknown."""
    if device.startswith("cuda"):
        name = device.split(":", 1)[-1]
        for key, (fp32, half) in GPU_PEAK_TFLOPS.items():
            if key.lower() in name.lower():
                low = not precision.startswith("32") and not precision.startswith("64")
                return Peak((half if low else fp32) * 1e12, f"data sheet: {key} {'bf16/fp16' if low else 'fp32'} dense")
        return Peak(float("nan"), f"unknown GPU {name!r}: add it to GPU_PEAK_TFLOPS")
    cores = threads or torch.get_num_threads() or os.cpu_count() or 1
    per_cycle, ghz = cpu_flops_per_cycle(precision), _cpu_ghz()
    return Peak(per_cycle * cores * ghz * 1e9, f"estimate: {per_cycle} FLOP/cycle x {cores} cores x {ghz:.2f} GHz")


def fraction_of_peak(flops_per_image: float, images_per_second: float, peak: Peak) -> float:
    """Achieved FLOP/s over the peak (nan when the peak or the FLOPs are unknown)."""
    if not peak.flops or peak.flops != peak.flops:
        return float("nan")
    return flops_per_image * images_per_second / peak.flops


def write_results(table, out_dir: str | Path, name: str) -> Path:
    """Write a benchmark's table as `out_dir/name` (a file name that carries its conditions, timm style,
    so results of different settings never overwrite each other); returns the path."""
    out = Path(out_dir) / name
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out, index=False)
    return out

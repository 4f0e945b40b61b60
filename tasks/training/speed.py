"""The fastest correct configuration on this machine: native-precision check, memory format, compile.

    >>> from tasks.training.speed import native_bf16, warn_precision, MemoryFormat
    >>> warn_precision("bf16-mixed", "cpu")   # warns once on a CPU without native bf16; returns what runs

Three machine settings (none changes a result beyond float rounding, so none is part of a cell's
identity; `benchmark/plan/spec.py` is untouched):

- precision: a suite's `precision` IS identity, so it runs as asked. On a CPU without native bf16
  (no `avx512_bf16` / `amx_bf16`) bf16 autocast is emulated and was measured ~25x slower than fp32
  (issue 12, AVX2 EPYC), so we warn once, naming the slowdown and the fix (`precision: 32-true`).
- memory format: `channels_last` for convolutional networks (5-20 % faster training on CPU, the
  fast path of cuDNN/oneDNN convolutions); `MemoryFormat` converts the module when fit/test starts
  and `ClassifierModule.on_after_batch_transfer` converts each image batch.
- `torch.compile`: off by default; a suite turns it on for its training steps with
  `throughput: {compile: true}` (`Compile`). Measured on 2 EPYC cores at 32 px, batch 32: the first
  step compiles for 22-32 s, then the small CNN trains 5 % faster and ResNet-18 6 % slower, so on
  CPUs and in short cells it rarely pays; on GPUs, in long runs, it can.
"""

from __future__ import annotations

import functools
import warnings
from pathlib import Path

import torch
from lightning.pytorch.callbacks import Callback
from torch import nn

# ClassifierModule.on_after_batch_transfer converts the layout of every batch, whatever the DataModule;
# Lightning warns that a module hook overrides the DataModule's, which is the intent here.
warnings.filterwarnings("ignore", message=r"You have overridden `on_after_batch_transfer` in `LightningModule`")

MEMORY_FORMATS = ("auto", "channels_last", "contiguous")
CPU_BF16_SLOWDOWN = "about 25x"  # measured in issue 12: ResNet-18 224 px, bf16 autocast vs fp32, AVX2 EPYC


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where there is none: macOS, Windows)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def native_bf16(device: str = "cpu") -> bool:
    """Whether `device` computes bf16 natively (CUDA: Ampere or later; CPU: AVX512-BF16 or AMX)."""
    if device.startswith(("cuda", "gpu")):
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return bool({"avx512_bf16", "amx_bf16"} & cpu_flags())


_warned: set[str] = set()


def warn_precision(precision: str, accelerator: str) -> str:
    """The precision that really runs (the one asked: it is part of the cell), warning once per
    process when bf16 is asked on a CPU that emulates it."""
    precision = str(precision)
    on_cpu = accelerator == "cpu" or (accelerator == "auto" and not torch.cuda.is_available())
    if precision.startswith("bf16") and on_cpu and not native_bf16("cpu") and precision not in _warned:
        _warned.add(precision)
        warnings.warn(
            f"precision {precision!r} on a CPU without native bf16 (no avx512_bf16/amx_bf16 in /proc/cpuinfo): "
            f"bf16 is emulated and runs {CPU_BF16_SLOWDOWN} slower than float32. It runs as asked (precision is part "
            "of the cell); for speed set `precision: 32-true` in the suite (a different cell).",
            RuntimeWarning, stacklevel=2)
    return precision


def has_conv(model: nn.Module) -> bool:
    return any(isinstance(m, nn.Conv2d) for m in model.modules())


def resolve_memory_format(choice: str, model: nn.Module) -> str:
    """`auto` -> channels_last for convolutional networks, contiguous otherwise (transformers gain nothing)."""
    if choice not in MEMORY_FORMATS:
        raise ValueError(f"Unknown memory_format {choice!r} (suite key throughput.memory_format). "
                         f"Valid: {', '.join(MEMORY_FORMATS)}.")
    if choice == "auto":
        return "channels_last" if has_conv(model) else "contiguous"
    return choice


def torch_format(name: str) -> torch.memory_format:
    return torch.channels_last if name == "channels_last" else torch.contiguous_format


def to_format(x, name: str):
    """An image batch (4-D tensor) in memory format `name`; anything else unchanged."""
    if isinstance(x, torch.Tensor) and x.dim() == 4:
        return x.contiguous(memory_format=torch_format(name))
    return x


class MemoryFormat(Callback):
    """Put the module's weights (fit/test start) and its input batches in one memory format.

    The batch conversion happens in `ClassifierModule.on_after_batch_transfer`, which reads the
    `input_memory_format` attribute this callback sets (a callback cannot replace the batch).
    """

    def __init__(self, choice: str = "auto") -> None:
        self.choice = choice
        self.resolved: str | None = None

    def _apply(self, pl_module) -> None:
        self.resolved = resolve_memory_format(self.choice, pl_module)
        pl_module.to(memory_format=torch_format(self.resolved))
        pl_module.input_memory_format = self.resolved

    def setup(self, trainer, pl_module, stage: str) -> None:
        # Before the strategy wraps the module: DDP lays out its gradient buckets by the weights'
        # strides when it wraps, and weights re-laid out afterwards (as on_fit_start did) trained
        # a 2-device cell on gradients that differed from the 1-device ones (tests/benchmark/test_scale_ddp.py).
        if stage == "fit":
            self._apply(pl_module)

    def on_test_start(self, trainer, pl_module) -> None:
        self._apply(pl_module)


class Compile(Callback):
    """`torch.compile` the module's training forward for the fit (suite key `throughput.compile`).

    Only the training step runs compiled (`ClassifierModule.training_step` calls `compiled_forward`):
    validation and test would each compile their own graph (eval mode, inference_mode) for a few
    batches. Compiled in `setup`, in each DDP rank after it is spawned (a compiled function does not
    pickle), and dropped at teardown, so the returned module is a plain one. The weights are the
    module's own: compiling changes no state_dict key and results only by float rounding.
    """

    def __init__(self, enabled: bool = False) -> None:
        self.enabled = enabled

    def setup(self, trainer, pl_module, stage: str) -> None:
        if self.enabled and stage == "fit":
            pl_module.compiled_forward = torch.compile(pl_module.forward)

    def teardown(self, trainer, pl_module, stage: str) -> None:
        if stage == "fit":
            pl_module.compiled_forward = None

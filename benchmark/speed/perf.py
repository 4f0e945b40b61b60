"""medtl's inference speed against timm's best configuration on the same models, alternating in one process.

    make perf                                                     # ResNet-18/50, DenseNet-169, VGG-16 at 224 px
    python -m benchmark.speed.perf --models resnet18 --batch-size 8 --batches 5 --rounds 3

timm's `benchmark.py` is a script in timm's repository, not in its wheel, so it is not vendored:
timm's models are measured here through timm's API with that script's documented inference
settings (`timm.create_model`, `model.eval()`, random input, warm-up steps, then timed steps under
`torch.no_grad`, synchronised; `--channels-last` and `--amp` bf16 as its options). medtl's side is
`benchmark.speed.throughput.measure_fps` on medtl's backbone of the same name in its default
configuration (channels_last for convnets, inference_mode), in fp32 and, where the device runs
bf16 natively, in bf16 autocast too (what a suite gets with `precision: bf16-mixed`). Each round measures every timm
configuration and medtl back to back for one model before the next, so machine load (shared CPUs)
hits both sides alike; the median over rounds is kept. Writes
`reports/throughput/perf_<device>_<size>px_bs<batch>_t<threads>.csv` with the ratios best medtl / best timm
and medtl fp32 / best timm fp32.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch

from backbones import create_backbone
from benchmark.speed.throughput import _autocast, _device, _sync, device_name, measure_fps, write_results
from tasks.training.speed import native_bf16

MODELS = ("resnet18", "resnet50", "densenet169", "vgg16")


def timm_fps(model, *, image_size: int, batch_size: int, warmup: int, batches: int, channels_last: bool, bf16: bool,
             dev: torch.device) -> float:
    """timm benchmark.py's InferenceBenchmarkRunner, reduced to its timing loop."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(dev).eval().to(memory_format=fmt)
    x = torch.randn(batch_size, 3, image_size, image_size, device=dev).contiguous(memory_format=fmt)
    sync = _sync(dev)
    with torch.no_grad(), _autocast(dev, "bf16-mixed" if bf16 else "32-true"):
        for _ in range(warmup):
            model(x)
        sync()
        start = time.perf_counter()
        for _ in range(batches):
            model(x)
        sync()
    return batch_size * batches / (time.perf_counter() - start)


def timm_configs(dev: torch.device, with_bf16: bool) -> dict[str, dict]:
    configs = {"timm fp32 nchw": dict(channels_last=False, bf16=False),
               "timm fp32 channels_last": dict(channels_last=True, bf16=False)}
    if with_bf16:
        configs["timm bf16 channels_last"] = dict(channels_last=True, bf16=True)
    return configs


def compare(models, *, image_size: int, batch_size: int, warmup: int, batches: int, rounds: int, device: str | None,
            with_bf16: bool):
    import pandas as pd
    import timm

    dev = _device(device)
    configs = timm_configs(dev, with_bf16)
    rows = []
    for name in models:
        theirs = timm.create_model(name, pretrained=False)
        ours = create_backbone(name, "scratch")
        # medtl's own configurations: fp32 (a suite's default precision) and, where the device runs
        # bf16 natively, bf16 autocast (a suite's `precision: bf16-mixed`), both in medtl's default layout.
        mine = {"medtl": "32-true", **({"medtl bf16": "bf16-mixed"} if with_bf16 else {})}
        samples: dict[str, list[float]] = {k: [] for k in [*configs, *mine]}
        layout = ""
        for i in range(rounds):
            # Odd rounds run medtl first, so a load that drifts within a round favours neither side.
            for label in ([*configs, *mine] if i % 2 == 0 else [*mine, *configs]):
                if label in mine:
                    result = measure_fps(ours, image_size=image_size, batch_size=batch_size, warmup=warmup,
                                         batches=batches, device=str(dev), precision=mine[label])
                    samples[label].append(result.fps)
                    layout = result.memory_format
                else:
                    samples[label].append(timm_fps(theirs, image_size=image_size, batch_size=batch_size, warmup=warmup,
                                                   batches=batches, dev=dev, **configs[label]))
        med = {k: statistics.median(v) for k, v in samples.items()}
        best = max(configs, key=lambda k: med[k])
        best32 = max((k for k in configs if "fp32" in k), key=lambda k: med[k])
        ours_best = max(mine, key=lambda k: med[k])
        # Best against best (each side's fastest configuration on this device), and like with like in fp32
        # (what a suite runs by default: precision is part of a cell, so medtl never switches it silently).
        row = {"model": name, **{f"{k} img/s": round(v, 3) for k, v in med.items()}, "medtl layout": layout,
               "best timm": best, "best medtl": ours_best, "ratio medtl/best timm": round(med[ours_best] / med[best], 3),
               "ratio medtl/best timm fp32": round(med["medtl"] / med[best32], 3),
               "image_size": image_size, "batch_size": batch_size, "warmup": warmup, "batches": batches,
               "rounds": rounds, "device": device_name(dev), "threads": torch.get_num_threads(),
               "timm": timm.__version__, "torch": torch.__version__, "load_avg_1m": round(os.getloadavg()[0], 2)}
        rows.append(row)
        print(f"{name:>12}: best medtl ({ours_best}) {med[ours_best]:.1f} img/s, best timm ({best}) {med[best]:.1f} img/s, "
              f"ratio {row['ratio medtl/best timm']:.2f}, vs best fp32 timm {row['ratio medtl/best timm fp32']:.2f} "
              f"(load {row['load_avg_1m']})", flush=True)
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmark.speed.perf", description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated (names valid in timm and medtl)")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--batches", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds; the median is kept")
    parser.add_argument("--device", help="cpu, cuda (default: cuda if available)")
    parser.add_argument("--bf16", choices=["auto", "yes", "no"], default="auto",
                        help="also time timm with bf16 autocast (auto: where the device runs bf16 natively)")
    parser.add_argument("--out-dir", default="reports/throughput")
    args = parser.parse_args(argv)
    dev = _device(args.device)
    with_bf16 = args.bf16 == "yes" or (args.bf16 == "auto" and native_bf16(dev.type))
    table = compare(args.models.split(","), image_size=args.image_size, batch_size=args.batch_size, warmup=args.warmup,
                    batches=args.batches, rounds=args.rounds, device=args.device, with_bf16=with_bf16)
    out = write_results(table, args.out_dir, f"perf_{dev.type}_{args.image_size}px_bs{args.batch_size}_t{torch.get_num_threads()}.csv")
    print(table.to_markdown(index=False))
    print(f"Written to {out}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())

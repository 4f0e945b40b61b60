"""Training-pipeline efficiency: end-to-end training img/s over model-only training img/s.

    python -m benchmark.pipeline_bench                                   # resnet18 + smallcnn at 32 and 64 px
    python -m benchmark.pipeline_bench --models smallcnn --sizes 32 --batches 4 --rounds 2
    python -m benchmark.pipeline_bench --pipeline device    # uint8 store + batch augmentation on the device

End to end = the real `TaskDataModule` train loader (in-memory generated images, albumentations
per image, `--num-workers` processes; or with `--pipeline device` the uint8 tensor store whose
batches are augmented on the training device, `tasks.data.device_pipeline`) feeding forward + backward + Adam step; model only = the
same step on one random batch already in memory. Same model, batch, precision and memory format
(channels_last for convnets, `tasks.training.speed`). The two alternate within each round so a
shared machine's load hits both alike; the median over rounds is kept. Also reported: the loader
alone (img/s of iterating it), which bounds what end to end can reach. Writes
`reports/throughput/pipeline_<device>_bs<batch>_<precision>_w<workers>_t<threads>.csv`, with the
serial bound 1 / (1 + model-only / loader-alone rate) next to the measured ratio.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
import time

import torch

from backbones import create_backbone
from benchmark.throughput import _device, _prepare, _sync, device_name, training_net, training_step_fn, write_results
from tasks.data import TaskDataModule, load_task
from tasks.training.speed import to_format


def _timed(step, batches, n: int, sync) -> float:
    """img/s of `step` over `n` batches drawn from the iterator `batches` (drawing included)."""
    start, images = time.perf_counter(), 0
    for x, y in itertools.islice(batches, n):
        step(x, y)
        images += len(x)
    sync()
    return images / (time.perf_counter() - start)


def bench(model_name: str, size: int, *, batch_size: int, batches: int, rounds: int, num_workers: int,
          precision: str, device: str | None, memory_format: str, pipeline: str = "cpu") -> dict:
    dev = _device(device)
    # Enough rows that the timed batches come from real epochs (gen-target: 136 images at scale 1).
    task = load_task("gen-target", size=size, scale=max(1.0, batch_size * (batches + 1) / 80))
    backbone = create_backbone(model_name, "scratch")
    config = backbone.input_config
    data = TaskDataModule(task, fold=0, k=3, seed=0, size=size, mean=config.mean, std=config.std, batch_size=batch_size,
                          augment="light", num_workers=num_workers, pipeline=pipeline, pin_memory=dev.type == "cuda")
    data.setup()
    net, layout = _prepare(training_net(backbone, size, task.meta.num_classes), dev, memory_format, False)
    step = training_step_fn(net, torch.optim.Adam(net.parameters(), lr=1e-4), dev, precision)
    sync = _sync(dev)

    def loader_batches():
        while True:  # epochs back to back, as Lightning's loop runs them
            for x, y in data.train_dataloader():
                # The device pipeline's augmentation runs here, on `dev`, as in training (a no-op for cpu).
                x, y = data.device_transform((x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)), training=True)
                yield to_format(x, layout), y

    x0 = to_format(torch.randn(batch_size, 3, size, size, device=dev), layout)
    y0 = torch.randint(0, task.meta.num_classes, (batch_size,), device=dev)
    in_memory = itertools.repeat((x0, y0))
    stream = loader_batches()
    step(x0, y0)  # warm-up: allocator, oneDNN/cuDNN kernels
    next(stream)
    samples = {"model_only": [], "end_to_end": [], "loader_only": []}
    for _ in range(rounds):
        samples["model_only"].append(_timed(step, in_memory, batches, sync))
        samples["end_to_end"].append(_timed(step, stream, batches, sync))
        samples["loader_only"].append(_timed(lambda x, y: None, stream, batches, sync))
    med = {k: statistics.median(v) for k, v in samples.items()}
    return {"model": model_name, "image_size": size, **{f"{k} img/s": round(v, 3) for k, v in med.items()},
            "efficiency": round(med["end_to_end"] / med["model_only"], 3),
            # With the loader in the main process, a batch costs loading + training time, so end to end
            # can reach at most this; computed from two rates, it is steadier than the ratio on a loaded machine.
            "efficiency_serial_bound": round(1 / (1 + med["model_only"] / med["loader_only"]), 3), "batch_size": batch_size,
            "batches": batches, "rounds": rounds, "pipeline": pipeline, "num_workers": num_workers, "precision": precision,
            "memory_format": layout, "device": device_name(dev), "threads": torch.get_num_threads(),
            "load_avg_1m": round(os.getloadavg()[0], 2)}


def main(argv: list[str] | None = None) -> int:
    import pandas as pd

    parser = argparse.ArgumentParser(prog="python -m benchmark.pipeline_bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="resnet18,smallcnn")
    parser.add_argument("--sizes", default="32,64")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--batches", type=int, default=6, help="timed batches per side per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--num-workers", type=int, default=0)
    parser.add_argument("--precision", default="32-true")
    parser.add_argument("--memory-format", default="auto", choices=["auto", "channels_last", "contiguous"])
    parser.add_argument("--device", help="cpu, cuda (default: cuda if available)")
    parser.add_argument("--pipeline", default="cpu", choices=["cpu", "device"],
                        help="cpu: albumentations per image; device: uint8 store + batch augmentation on the device")
    parser.add_argument("--out-dir", default="reports/throughput")
    args = parser.parse_args(argv)
    rows = []
    for name in args.models.split(","):
        for size in (int(s) for s in args.sizes.split(",")):
            row = bench(name, size, batch_size=args.batch_size, batches=args.batches, rounds=args.rounds,
                        num_workers=args.num_workers, precision=args.precision, device=args.device,
                        memory_format=args.memory_format, pipeline=args.pipeline)
            rows.append(row)
            print(f"{name:>10} {size:>3} px: end to end {row['end_to_end img/s']} img/s / model only "
                  f"{row['model_only img/s']} img/s = {row['efficiency']:.2f} (loader alone {row['loader_only img/s']} "
                  f"img/s, load {row['load_avg_1m']})", flush=True)
    table = pd.DataFrame(rows)
    dev = _device(args.device)
    name = f"pipeline_{args.pipeline}_{dev.type}_bs{args.batch_size}_{args.precision}_w{args.num_workers}_t{torch.get_num_threads()}.csv"
    out = write_results(table, args.out_dir, name)
    print(table.to_markdown(index=False))
    print(f"Written to {out}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())

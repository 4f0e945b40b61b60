"""Training-pipeline efficiency: end-to-end training img/s over model-only training img/s.

    python -m benchmark.speed.pipeline_bench                          # resnet18 + smallcnn at 32 and 64 px, pipeline auto
    python -m benchmark.speed.pipeline_bench --pipeline cpu,device    # both paths, one row each
    python -m benchmark.speed.pipeline_bench --models smallcnn --sizes 32 --batches 8

End to end = the real `TaskDataModule` train loader (in-memory generated images; `--pipeline cpu`:
albumentations per image in `--num-workers` processes; `device`: the uint8 tensor store whose
batches are augmented on the training device, `tasks.data.device_pipeline`; `auto`: what training
picks on this device) feeding forward + backward + Adam step; model only = the same step on one
random batch already in memory. Same model, batch, precision and memory format (channels_last for
convnets, `tasks.training.speed`).

The two sides alternate batch by batch (the order flips every batch), so a shared machine's load
and the CPU's clock hit both alike; each side's img/s is its images over its summed time, so epoch
starts (a new loader iterator) count against end to end as they do in training. Earlier rounds of
6 batches per side drifted by up to 14 % between runs on an idle machine. Also reported: the
loader alone (img/s of fetching and augmenting, timed inside end to end), and the serial bound
1 / (1 + model-only / loader-alone rate) that a main-process loader cannot beat. Writes
`reports/throughput/pipeline_<pipeline>_<device>_bs<batch>_<precision>_w<workers>_t<threads>.csv`.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import time

import torch

from backbones import create_backbone
from benchmark.speed.throughput import _device, _prepare, _sync, device_name, training_net, training_step_fn, write_results
from tasks.data import TaskDataModule, load_task
from tasks.data.device_pipeline import resolve_pipeline
from tasks.training.speed import to_format


def bench(model_name: str, size: int, *, batch_size: int, batches: int, num_workers: int,
          precision: str, device: str | None, memory_format: str, pipeline: str = "auto", augment: str = "light") -> dict:
    dev = _device(device)
    # Several epochs of rows, so epoch starts are timed as often as a short training run has them.
    task = load_task("gen-target", size=size, scale=max(1.0, batch_size * batches / 200))
    pipeline = resolve_pipeline(pipeline, len(task.index), size)
    backbone = create_backbone(model_name, "scratch")
    config = backbone.input_config
    data = TaskDataModule(task, fold=0, k=3, seed=0, size=size, mean=config.mean, std=config.std, batch_size=batch_size,
                          augment=augment, num_workers=num_workers, pipeline=pipeline, pin_memory=dev.type == "cuda")
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
    stream = loader_batches()
    for _ in range(2):  # warm-up: allocator, oneDNN/cuDNN kernels, the loader's first epoch
        step(x0, y0)
        step(*next(stream))
    sync()
    clock = time.perf_counter
    seconds = {"model_only": 0.0, "end_to_end": 0.0, "loader_only": 0.0}
    images = {"model_only": 0, "end_to_end": 0}

    def model_only():
        start = clock()
        step(x0, y0)
        sync()
        seconds["model_only"] += clock() - start
        images["model_only"] += batch_size

    def end_to_end():
        start = clock()
        x, y = next(stream)
        sync()
        loaded = clock()
        step(x, y)
        sync()
        seconds["loader_only"] += loaded - start
        seconds["end_to_end"] += clock() - start
        images["end_to_end"] += len(x)

    for i in range(batches):
        for side in ((model_only, end_to_end) if i % 2 == 0 else (end_to_end, model_only)):
            side()
    rate = {"model_only": images["model_only"] / seconds["model_only"],
            "end_to_end": images["end_to_end"] / seconds["end_to_end"],
            "loader_only": images["end_to_end"] / seconds["loader_only"]}
    return {"model": model_name, "image_size": size, **{f"{k} img/s": round(v, 3) for k, v in rate.items()},
            "efficiency": round(rate["end_to_end"] / rate["model_only"], 3),
            # With the loader in the main process, a batch costs loading + training time, so end to end
            # can reach at most this.
            "efficiency_serial_bound": round(1 / (1 + rate["model_only"] / rate["loader_only"]), 3), "batch_size": batch_size,
            "batches": batches, "pipeline": pipeline, "augment": augment, "num_workers": num_workers,
            "precision": precision, "memory_format": layout, "device": device_name(dev), "threads": torch.get_num_threads(),
            "load_avg_1m": round(os.getloadavg()[0], 2)}


def main(argv: list[str] | None = None) -> int:
    import pandas as pd

    parser = argparse.ArgumentParser(prog="python -m benchmark.speed.pipeline_bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="resnet18,smallcnn")
    parser.add_argument("--sizes", default="32,64")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--batches", type=int, default=40, help="timed batches per side, alternating")
    parser.add_argument("--num-workers", type=int, default=0)
    parser.add_argument("--precision", default="32-true")
    parser.add_argument("--memory-format", default="auto", choices=["auto", "channels_last", "contiguous"])
    parser.add_argument("--device", help="cpu, cuda (default: cuda if available)")
    parser.add_argument("--pipeline", default="auto",
                        help="comma list of auto (what training picks here), cpu (albumentations per image), "
                             "device (uint8 store + batch augmentation on the training device)")
    parser.add_argument("--augment", default="light", choices=["none", "light", "standard"])
    parser.add_argument("--out-dir", default="reports/throughput")
    args = parser.parse_args(argv)
    rows = []
    for pipeline, name, size in itertools.product(args.pipeline.split(","), args.models.split(","),
                                                  (int(s) for s in args.sizes.split(","))):
        row = bench(name, size, batch_size=args.batch_size, batches=args.batches, num_workers=args.num_workers,
                    precision=args.precision, device=args.device, memory_format=args.memory_format, pipeline=pipeline, augment=args.augment)
        rows.append(row)
        print(f"{row['pipeline']:>6} {name:>10} {size:>3} px: end to end {row['end_to_end img/s']} img/s / model only "
              f"{row['model_only img/s']} img/s = {row['efficiency']:.2f} (loader alone {row['loader_only img/s']} "
              f"img/s, load {row['load_avg_1m']})", flush=True)
    table = pd.DataFrame(rows)
    dev = _device(args.device)
    pipelines = "+".join(sorted(set(table["pipeline"])))
    name = f"pipeline_{pipelines}_{args.augment}_{dev.type}_bs{args.batch_size}_{args.precision}_w{args.num_workers}_t{torch.get_num_threads()}.csv"
    out = write_results(table, args.out_dir, name)
    print(table.to_markdown(index=False))
    print(f"Written to {out}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())

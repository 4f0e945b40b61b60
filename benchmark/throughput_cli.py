"""`medtl throughput`: inference img/s over a batch sweep, latency, training img/s, FLOPs and fraction of peak.

    medtl throughput --backbones resnet18,vgg16 [--image-size 224 --batch-sizes 1,8,32 --precision 32-true
                     --memory-format auto --compile --tracking-uri URI]   # -> reports/throughput/throughput_<conditions>.csv
"""

from __future__ import annotations

import os

from benchmark.run.preflight import number, numbers


def add_throughput_command(sub) -> None:
    """The `throughput` subcommand of `medtl` (benchmark/cli.py)."""
    perf = sub.add_parser("throughput", help="inference img/s over a batch sweep, latency, training img/s, FLOPs and "
                          "fraction of peak per backbone, with their conditions (make perf)")
    perf.add_argument("--backbones", help="comma-separated names (default: all)")
    perf.add_argument("--image-size", type=number(int, 1, fix="--image-size 224"), default=224)
    perf.add_argument("--batch-size", type=number(int, 1, fix="--batch-size 16"), default=16, help="one batch size (see --batch-sizes)")
    perf.add_argument("--batch-sizes", type=numbers(1, fix="--batch-sizes 1,8,32"), help="inference sweep, e.g. 1,8,32 (default: --batch-size); training uses the largest")
    perf.add_argument("--precision", default="32-true", help="32-true, bf16-mixed, 16-mixed")
    perf.add_argument("--memory-format", default="auto", choices=["auto", "channels_last", "contiguous"],
                      help="auto: channels_last for convnets")
    perf.add_argument("--compile", action="store_true", help="torch.compile the inference forward and the training step (off by default)")
    perf.add_argument("--no-training", action="store_true", help="skip the training img/s measurement")
    perf.add_argument("--device", help="cpu, cuda, cuda:1 (default: cuda if available)")
    perf.add_argument("--warmup", type=number(int, 0, fix="--warmup 2"), default=2)
    perf.add_argument("--batches", type=number(int, 1, fix="--batches 5"), default=5)
    perf.add_argument("--tracking-uri", help="also log each row as an MLflow run (experiment 'throughput') to this tracking URI")
    perf.add_argument("--out-dir", default="reports/throughput")
    perf.set_defaults(func=cmd_throughput)


def cmd_throughput(args) -> int:
    import pandas as pd
    import torch

    from backbones import create_backbone, list_backbones
    from benchmark.speed.cost import flops_per_image
    from benchmark.speed.throughput import device_peak, fraction_of_peak, measure_fps, measure_latency, measure_training, write_results
    from tasks.training.speed import warn_precision
    from tracking.environment import environment_tags

    from benchmark.run.preflight import check_output_folder
    check_output_folder(args.out_dir, "--out-dir")  # before the measurements, not after them
    names = args.backbones.split(",") if args.backbones else list_backbones()
    sweep = args.batch_sizes or [args.batch_size]
    warn_precision(args.precision, "cpu" if (args.device or "").startswith("cpu") else "auto")
    common = dict(precision=args.precision, device=args.device, memory_format=args.memory_format)
    rows = []
    for name in names:
        net = create_backbone(name, "scratch")  # weights do not change speed
        size = max(args.image_size, net.input_config.min_size)
        flops = flops_per_image(net, size)
        for batch in sweep:
            r = measure_fps(net, image_size=size, batch_size=batch, warmup=args.warmup, batches=args.batches,
                            compile=args.compile, **common)
            peak = device_peak(r.device, args.precision, r.threads)
            rows.append({"backbone": name, "mode": "inference", "batch_size": batch, "img_s": round(r.fps, 2),
                         "flops_per_image": flops, "fraction_of_peak": fraction_of_peak(flops, r.fps, peak),
                         "peak_flops": peak.flops, "peak_source": peak.source,
                         **{k.split(".", 1)[1]: v for k, v in r.params().items() if k != "throughput.batch_size"}})
            print(f"{name:>16} inference bs{batch:<4}: {r.fps:9.1f} img/s  ({rows[-1]['fraction_of_peak']:.1%} of peak, "
                  f"{peak.source})", flush=True)
        base = {k: v for k, v in rows[-1].items() if k not in ("mode", "batch_size", "img_s", "fraction_of_peak")}
        lat = measure_latency(net, image_size=size, warmup=args.warmup, repeats=max(args.batches, 10), **common)
        rows.append({**base, "mode": "latency", "batch_size": 1, **{k: round(v, 3) for k, v in lat.items()}})
        print(f"{name:>16} latency bs1   : p50 {lat['p50_ms']:.1f} ms, p95 {lat['p95_ms']:.1f} ms", flush=True)
        if not args.no_training:
            fps = measure_training(net, image_size=size, batch_size=max(sweep), warmup=args.warmup, batches=args.batches,
                                   compile=args.compile, **common)
            rows.append({**base, "mode": "training", "batch_size": max(sweep), "img_s": round(fps, 2), "compiled": args.compile,
                         "fraction_of_peak": fraction_of_peak(3 * flops, fps, peak)})
            print(f"{name:>16} training bs{max(sweep):<5}: {fps:9.1f} img/s (forward + backward + Adam step)", flush=True)
    table = pd.DataFrame(rows)
    tags = environment_tags()
    table["torch"] = tags["medtl.version.torch"]
    table["git_sha"] = tags["medtl.git_sha"]
    table["load_avg_1m"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    device = (args.device or ("cuda" if torch.cuda.is_available() else "cpu")).replace(":", "")
    layout = table["memory_format"].iloc[0] if args.memory_format == "auto" and len(table) else args.memory_format
    # The file name carries the conditions, so results from different settings never overwrite each other.
    out = write_results(table, args.out_dir, f"throughput_{device}_{args.image_size}px_{args.precision}_{layout}"
                                             f"{'_compiled' if args.compile else ''}_t{torch.get_num_threads()}.csv")
    if args.tracking_uri:
        _log_throughput(table, args.tracking_uri)
    print(table.drop(columns=["peak_source", "git_sha"]).to_markdown(index=False))
    print(f"Written to {out}. Model work only, random input, after {args.warmup} warm-up batches; training FLOPs "
          "taken as 3x inference.")
    return 0


def _log_throughput(table, uri: str) -> None:
    """One MLflow run per (backbone, mode, batch) in experiment `throughput`: numbers as metrics, conditions as tags."""
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    found = client.get_experiment_by_name("throughput")
    experiment = found.experiment_id if found else client.create_experiment("throughput")
    measures = ("img_s", "p50_ms", "p95_ms", "fraction_of_peak", "flops_per_image")
    for row in table.to_dict("records"):
        tags = {f"throughput.{k}": str(v) for k, v in row.items() if k not in measures}
        run = client.create_run(experiment, run_name=f"{row['backbone']} {row['mode']} bs{row['batch_size']}", tags=tags)
        for k in measures:
            if k in row and row[k] == row[k]:
                client.log_metric(run.info.run_id, k, float(row[k]))
        client.set_terminated(run.info.run_id)

"""Wall time of one suite with 1 and with 2 local workers (`medtl benchmark --launcher local`), a fresh store each.

    python -m benchmark.speed.launch_bench [--cells 8] [--epochs 1] [--rounds 2]   # -> reports/throughput/launch_<conditions>.csv

A measurement, not a test: the same generated suite (gen-target, smallcnn, 16 px, scratch weights)
runs alternately with --workers 1 and --workers 2, each time in a new temporary folder (its own
SQLite store), timed from the command's start to its exit (interpreter start-up, worker start-up,
cells, report). CPU workers split the cores (the launcher sets OMP_NUM_THREADS = cores / workers);
the CSV records the cores, the threads and the load average, since on a shared machine they decide
the ratio.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch
import yaml

from benchmark.speed.throughput import write_results

REPO = Path(__file__).resolve().parents[1]


def suite(cells: int, epochs: int, size: int) -> dict:
    seeds = max(cells // 2, 1)  # 2 folds x seeds
    return {"name": "launchbench", "target": {"dataset": "gen-target", "options": {"size": size}}, "folds": 2,
            "seeds": list(range(seeds)), "image_size": size, "backbones": ["smallcnn"],
            "sources": {"none": {"weights": "scratch"}}, "hparams": {"epochs": epochs, "batch_size": 32},
            "throughput": {"batch_size": 8, "warmup": 1, "batches": 2}}


def timed_run(workers: int, spec: dict) -> float:
    with tempfile.TemporaryDirectory(prefix="medtl-launch-") as tmp:
        path = Path(tmp) / "launchbench.yaml"
        path.write_text(yaml.safe_dump(spec))
        env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
               "MLFLOW_TRACKING_URI": f"sqlite:///{tmp}/mlruns.db"}
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "benchmark.cli", "benchmark", str(path), "--launcher", "local",
                               "--workers", str(workers), "--accelerator", "cpu"], cwd=tmp, env=env,
                              capture_output=True, text=True)
        seconds = time.perf_counter() - start
        if done.returncode != 0:
            raise SystemExit(f"--workers {workers} failed ({done.returncode}): {done.stderr[-2000:]}")
        return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out-dir", default="reports/throughput")
    args = parser.parse_args(argv)
    spec = suite(args.cells, args.epochs, args.image_size)
    rows = []
    for round_ in range(args.rounds):
        for workers in (1, 2) if round_ % 2 == 0 else (2, 1):  # alternate, so drift in the machine's load is shared
            load = os.getloadavg()[0]
            seconds = timed_run(workers, spec)
            rows.append({"round": round_, "workers": workers, "seconds": round(seconds, 2), "load_avg_1m_before": load,
                         "threads_per_worker": int(os.environ.get("OMP_NUM_THREADS", 0)) or max(1, (os.cpu_count() or 1) // workers)})
            print(f"round {round_}: {workers} worker(s): {seconds:.1f} s (load {load:.1f})", flush=True)
    table = pd.DataFrame(rows)
    one = statistics.median(table[table.workers == 1].seconds)
    two = statistics.median(table[table.workers == 2].seconds)
    table["cells"], table["epochs"], table["image_size"], table["cores"] = 2 * len(spec["seeds"]), args.epochs, args.image_size, os.cpu_count()
    table["torch"] = torch.__version__
    out = write_results(table, args.out_dir, f"launch_local_{table.cells[0]}cells_{args.epochs}ep_{args.image_size}px_{os.cpu_count()}cores.csv")
    # Paired within a round (the two runs sit next to each other in time): robust to the load drifting.
    paired = [float(r[r.workers == 2].seconds.iloc[0] / r[r.workers == 1].seconds.iloc[0]) for _, r in table.groupby("round")]
    print(f"paired ratios 2/1 per round: {', '.join(f'{x:.2f}' for x in paired)}; median {statistics.median(paired):.2f}")
    print(f"median wall time: 1 worker {one:.1f} s, 2 workers {two:.1f} s, ratio 2/1 = {two / one:.2f} "
          f"({table.cells[0]} cells, {os.cpu_count()} cores); written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

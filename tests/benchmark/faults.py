"""Helpers for the fault tests: tiny suites, tiny datasets on disk, and what a store holds afterwards."""

from __future__ import annotations

import csv
import os
import shlex
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

REPO = Path(__file__).resolve().parents[2]

# The cheapest suite that trains: generated target at 32 px (smallcnn's minimum), 1 epoch, 2 folds.
TINY = {
    "name": "tiny",
    "target": {"dataset": "gen-target", "options": {"size": 32, "scale": 0.5}},
    "folds": 2,
    "image_size": 32,
    "backbones": ["smallcnn"],
    "sources": {"none": {"weights": "scratch"}},
    "hparams": {"epochs": 1, "batch_size": 16},
    "throughput": {"batch_size": 4, "warmup": 1, "batches": 1},
}


def suite(folder: Path, text: str | None = None, **changes) -> Path:
    """A suite file: TINY with `changes` (a value of None deletes the key), or `text` verbatim."""
    path = folder / "suite.yaml"
    if text is None:
        data = {k: v for k, v in {**TINY, **changes}.items() if v is not None}
        text = yaml.safe_dump(data, sort_keys=False)
    path.write_text(text)
    return path


def image(path: Path, value: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.full((8, 8, 3), value, dtype=np.uint8)
    pixels[value % 8] = 255 - value  # distinct bytes per value, so files are not duplicates of each other
    Image.fromarray(pixels).save(path)


def class_folders(root: Path, layout: dict[str, int]) -> Path:
    """`layout` maps a relative class folder (e.g. "train/a") to its number of images."""
    for n, (folder, count) in enumerate(layout.items()):
        for i in range(count):
            image(root / folder / f"{i}.png", value=(n * 17 + i * 5) % 250)
    return root


def csv_dataset(root: Path, rows: list[tuple], header=("path", "label", "split")) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for i, row in enumerate(rows):
        if not (root / row[0]).exists():
            image(root / row[0], value=(i * 7) % 250)
    with open(root / "labels.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(row[: len(header)] for row in rows)
    return root


def npz(path: Path, **arrays) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return path


def closed_port() -> int:
    """A loopback port with nothing listening (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    return int(proc.stdout)


def runs(uri: str, experiment: str = "medtl-tiny") -> list:
    """All runs of the experiment (empty if the store or experiment does not exist)."""
    path = uri.removeprefix("sqlite:///")
    if uri.startswith("sqlite:///") and not Path(path).exists():
        return []
    if uri.startswith("sqlite:///") and not Path(path).read_bytes()[:16].startswith(b"SQLite format 3"):
        return []  # the damaged-store rows: a file that holds no runs by construction
    from mlflow.tracking import MlflowClient

    try:
        client = MlflowClient(uri)
        exp = client.get_experiment_by_name(experiment)
    except Exception:  # noqa: BLE001 - a damaged SQLite file holds no runs either
        return []
    return client.search_runs([exp.experiment_id], max_results=5000) if exp else []


def cli_env(**extra) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


@contextmanager
def silent_listener(lifetime_s: float = 120.0) -> Iterator[int]:
    """A loopback port whose listener accepts every connection and never answers (a stuck server, a wrong port).

    A daemon thread holds the accepted sockets; it stops on leaving the block or after `lifetime_s`, whichever
    comes first, so a test that fails half-way leaves nothing behind.
    """
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    server.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        held, end = [], time.monotonic() + lifetime_s
        while not stop.is_set() and time.monotonic() < end:
            try:
                held.append(server.accept()[0])
            except (socket.timeout, OSError):
                continue
        for connection in held:
            connection.close()
        server.close()

    thread = threading.Thread(target=serve, name="silent-listener", daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join(5)


def fake_command(folder: Path, name: str, stderr: str, code: int = 1) -> Path:
    """An executable `name` in `folder` that prints `stderr` and exits `code` (a cluster tool that fails)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(f"#!/bin/sh\necho {shlex.quote(stderr)} >&2\nexit {code}\n")
    path.chmod(0o755)
    return path


# --- suites as real processes (the kill and resume tests) -----------------------------------------------------------

RUN_TIMEOUT_S = 300  # one suite invocation, generously (2 shared cores)


def start_suite(folder: Path, path: Path) -> subprocess.Popen:
    """`python -m benchmark.cli benchmark PATH` in `folder`, on the store `folder`/mlruns.db; output captured."""
    return subprocess.Popen([sys.executable, "-m", "benchmark.cli", "benchmark", str(path)], cwd=folder,
                            env=cli_env(MLFLOW_TRACKING_URI=f"sqlite:///{folder / 'mlruns.db'}"),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(proc: subprocess.Popen) -> tuple[int, str]:
    """Its exit code and output, once it ends (bounded by RUN_TIMEOUT_S)."""
    out, _ = proc.communicate(timeout=RUN_TIMEOUT_S)
    return proc.returncode, out


def cell_runs(folder: Path) -> list:
    """Every run of the store `folder`/mlruns.db but the suites' parent runs."""
    return [r for r in runs(f"sqlite:///{folder / 'mlruns.db'}") if r.data.tags.get("medtl.stage") != "suite"]

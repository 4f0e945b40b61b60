"""Ctrl-C (SIGINT) and SIGTERM during a cell: cell and parent run KILLED, exit 130 / 143, a rerun resumes.

    PYTHONPATH=. .venv/bin/python -m pytest -q -n 0 tests/benchmark/test_signals.py

A real process is needed (signals go to a PID); the suite's only cell trains long enough to be
interrupted while Lightning's `fit` runs, where a KeyboardInterrupt used to become `sys.exit(1)`.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from tests.benchmark.faults import cli_env, runs, suite

WAIT_S = 300  # bound on waiting for the cell to start (2 shared cores, cold imports)


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_signal_marks_cell_and_suite_killed_and_exits_128_plus_signal(tmp_path, signum, code):
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    path = suite(tmp_path, folds=2, hparams={"epochs": 500, "batch_size": 16})
    proc = subprocess.Popen([sys.executable, "-m", "benchmark.cli", "benchmark", str(path)], cwd=tmp_path,
                            env=cli_env(MLFLOW_TRACKING_URI=uri), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + WAIT_S
        while not any(r.info.status == "RUNNING" and r.data.tags.get("medtl.stage") == "finetune" for r in runs(uri)):
            assert proc.poll() is None and time.monotonic() < deadline, "the cell never started"
            time.sleep(0.5)
        time.sleep(3)  # into Lightning's fit loop
        proc.send_signal(signum)
        out, _ = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == code, out[-3000:]
    name = "SIGTERM" if signum == signal.SIGTERM else "SIGINT"
    assert f"{name}" in out and "recorded KILLED" in out and "Rerun the same command to resume" in out
    statuses = {(r.data.tags.get("medtl.stage"), r.info.status) for r in runs(uri)}
    assert statuses == {("finetune", "KILLED"), ("suite", "KILLED")}, statuses
    cell = next(r for r in runs(uri) if r.data.tags.get("medtl.stage") == "finetune")
    assert cell.data.tags["medtl.error"] == f"Interrupted: interrupted by {name}"
    assert not (tmp_path / "reports").exists()

"""A cell SIGKILLed mid-fit resumes from its last epoch and ends with the metrics of a fit never killed.

    PYTHONPATH=. .venv/bin/python -m pytest -q -n 0 -m slow tests/benchmark/test_resume_mid_fit.py -s

Real processes (`python -m benchmark.cli`), killed by PID once the first cell that trains holds at an
epoch (tasks/training/resume.py, benchmark/cell/resume.py). Kept apart from test_kill_resume.py (kills
between and across cells) so the two long files run on different test workers.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.benchmark.faults import RUN_TIMEOUT_S, cell_runs, cli_env, finish, start_suite, suite

RESUME_CASES = {
    # A fine-tuning cell killed (SIGKILL) after its second epoch: augmentations, a warm-up + cosine schedule,
    # early stopping and best-epoch selection all carry state across the kill.
    "finetune": (dict(folds=2, hparams={"epochs": 4, "batch_size": 16, "augment": "light", "select": "mcc", "patience": 3,
                                        "schedule": "cosine", "warmup_epochs": 1}), 2),
    # Layer-wise: head only for epochs 0-1, the top group from epoch 2 (the second phase), killed after epoch 2.
    "layerwise": (dict(folds=2, strategies=["layerwise"],
                       hparams={"epochs": 5, "batch_size": 16, "unfreeze_every": 2, "select": "mcc"}), 3),
    # A pretraining cell (the first cell to train) killed after its second epoch; the fine-tuning cells use its export.
    "pretrain": (dict(folds=2, sources={"gen": {"pretrain": {"dataset": "gen-general", "options": {"size": 32, "per_class": 6},
                                                           "folds": 3, "hparams": {"epochs": 3}}}}), 2),
}


def _tested(folder: Path) -> dict[str, dict[str, float]]:
    """spec hash -> the test metrics of its FINISHED run (timings left out: they vary with load)."""
    return {r.data.tags["medtl.spec_hash"]: {k: v for k, v in r.data.metrics.items() if k.startswith("test/")
                                              and not any(t in k for t in ("fps", "seconds", "ips"))}
            for r in cell_runs(folder) if r.info.status == "FINISHED"}


@pytest.mark.slow
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("case", sorted(RESUME_CASES))
def test_a_cell_killed_mid_fit_resumes_from_its_last_epoch_with_the_uninterrupted_metrics(tmp_path, case):
    from tasks.training.resume import HOLD_ENV

    changes, hold = RESUME_CASES[case]
    reference, faulty = tmp_path / "reference", tmp_path / "faulty"
    for folder in (reference, faulty):
        folder.mkdir()
    code, out = finish(start_suite(reference, suite(reference, **changes)))
    assert code == 0, out[-3000:]
    expected = _tested(reference)

    path, marker = suite(faulty, **changes), faulty / "held"
    # The first cell that trains waits at the start of epoch `hold` (its epochs 0..hold-1 and their checkpoint are
    # written) and writes the marker; then it is killed by PID, as a preempted job is.
    proc = subprocess.Popen([sys.executable, "-m", "benchmark.cli", "benchmark", str(path)], cwd=faulty,
                            env=cli_env(MLFLOW_TRACKING_URI=f"sqlite:///{faulty / 'mlruns.db'}", **{HOLD_ENV: f"{hold}:{marker}"}),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while not marker.exists():
        assert proc.poll() is None, f"exited {proc.returncode} before a cell was held: {proc.stdout.read()[-3000:]}"
        assert time.monotonic() < deadline, "no cell reached the held epoch"
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    (killed,) = [r for r in cell_runs(faulty) if r.info.status == "RUNNING"]
    folders = list((faulty / ".medtl_cache" / "resume").iterdir())
    assert [f.name for f in folders] == [killed.data.tags["medtl.spec_hash"]]
    assert (folders[0] / "last.ckpt").is_file()

    code, out = finish(start_suite(faulty, path))  # the rerun: no hold
    assert code == 0, out[-3000:]
    runs_of_cell = [r for r in cell_runs(faulty) if r.data.tags["medtl.spec_hash"] == killed.data.tags["medtl.spec_hash"]]
    (resumed,) = [r for r in runs_of_cell if r.info.status == "FINISHED"]
    assert int(resumed.data.tags["medtl.resumed_from_epoch"]) == hold >= 2
    assert resumed.data.tags["medtl.resumed_from_run"] == killed.info.run_id
    assert {r.info.run_id: r.info.status for r in runs_of_cell if r is not resumed} == {killed.info.run_id: "KILLED"}
    # The killed run's epochs were copied into the resumed run: its per-epoch history is whole.
    from mlflow.tracking import MlflowClient

    history = MlflowClient(f"sqlite:///{faulty / 'mlruns.db'}").get_metric_history(resumed.info.run_id, "val/loss")
    assert len(history) == int(resumed.data.params["hparams.epochs"]) and len({m.step for m in history}) == len(history)
    assert not any((faulty / ".medtl_cache" / "resume").iterdir())  # cleaned once the cell finished
    # Every cell (the resumed one, and with a pretraining source every cell fine-tuned from its export) tests as the
    # uninterrupted suite's did.
    got = _tested(faulty)
    assert set(got) == set(expected)
    for spec_hash, metrics in expected.items():
        assert metrics and got[spec_hash] == pytest.approx(metrics, abs=1e-6), spec_hash

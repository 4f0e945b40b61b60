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


def _journal_trials(storage, name: str) -> dict:
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    try:
        study = optuna.load_study(study_name=name, storage=JournalStorage(JournalFileBackend(str(storage))))
    except KeyError:  # not created yet
        return {}
    return {t.number: t for t in study.trials}


@pytest.mark.slow
def test_sigint_mid_trial_exits_130_marks_the_trial_fail_and_says_how_to_resume(tmp_path):
    """Ctrl-C while trial 0 trains (it holds after its first epoch): exit 130, trial FAIL, its run and the study run
    KILLED, and the message says how to resume (it used to be exit 1, no message, the trial RUNNING)."""
    from benchmark.plan.suite import load_suite
    from benchmark.tune.study import study_rows
    from benchmark.tune.trial import HOLD_ENV

    uri, storage, marker = f"sqlite:///{tmp_path / 'mlruns.db'}", tmp_path / "journal.log", tmp_path / "held"
    path = suite(tmp_path, hparams={"epochs": 2, "batch_size": 16})
    name = study_rows(load_suite(path))[0].name
    proc = subprocess.Popen([sys.executable, "-m", "benchmark.cli", "tune", str(path), "--n-trials", "2", "--storage",
                             str(storage), "--pruner", "none"], cwd=tmp_path, env=cli_env(MLFLOW_TRACKING_URI=uri,
                            **{HOLD_ENV: f"0:{marker}"}), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + WAIT_S
        while not marker.exists():
            assert proc.poll() is None and time.monotonic() < deadline, "trial 0 was never held"
            time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, out[-3000:]
    assert "interrupted (SIGINT)" in out and "trial is recorded FAIL" in out and "Rerun the same command to resume" in out
    assert "Traceback" not in out
    trial = _journal_trials(storage, name)[0]
    assert trial.state.name == "FAIL" and "Interrupted" in trial.user_attrs["error"]
    tuning = runs(uri, "medtl-tiny-tuning")
    statuses = {(r.data.tags.get("medtl.stage"), r.data.tags.get("medtl.trial_state"), r.info.status) for r in tuning}
    assert statuses == {("study", None, "KILLED"), ("trial", "FAIL", "KILLED")}, statuses


@pytest.mark.slow
def test_sigkill_of_a_local_launcher_ends_its_workers_and_the_rerun_reaps_its_suite_run(tmp_path):
    """SIGKILL cannot be caught: the workers watch the launcher's pid and stop themselves (cells KILLED); the next
    launch marks the dead launcher's suite run KILLED and leaves nothing RUNNING."""
    from benchmark.run.signals import process_gone

    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    path = suite(tmp_path, hparams={"epochs": 500, "batch_size": 16})
    command = [sys.executable, "-m", "benchmark.cli", "benchmark", str(path), "--launcher", "local", "--accelerator", "cpu",
               "--jobs-folder", str(tmp_path / "jobs")]
    log = (tmp_path / "launcher.log").open("w")
    proc = subprocess.Popen([*command, "--workers", "2"], cwd=tmp_path, env=cli_env(MLFLOW_TRACKING_URI=uri), stdout=log,
                            stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + WAIT_S
        while len(cells := [r for r in runs(uri) if r.info.status == "RUNNING" and r.data.tags.get("medtl.stage") == "finetune"]) < 2:
            assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "launcher.log").read_text()[-3000:]
            time.sleep(0.5)
        workers = {int(r.data.tags["medtl.pid"]) for r in cells}
        assert proc.pid not in workers and len(workers) == 2
    finally:
        proc.kill()  # SIGKILL
        proc.wait(timeout=60)
        log.close()
    killed_at = time.monotonic()
    while not all(process_gone(pid) for pid in workers) and time.monotonic() - killed_at < 30:
        time.sleep(0.2)
    outlived = time.monotonic() - killed_at
    assert all(process_gone(pid) for pid in workers), f"workers {workers} outlived their launcher by 30 s"
    assert outlived < 15, f"workers outlived their launcher by {outlived:.1f} s"
    # The workers recorded their own cells KILLED on the way out; the launcher's suite run is left RUNNING.
    cells = [r for r in runs(uri) if r.data.tags.get("medtl.stage") == "finetune"]
    assert {r.info.status for r in cells} == {"KILLED"}, [(r.info.status, r.data.tags.get("medtl.error")) for r in cells]
    assert [r.info.status for r in runs(uri) if r.data.tags.get("medtl.stage") == "suite"] == ["RUNNING"]

    suite(tmp_path, hparams={"epochs": 1, "batch_size": 16})  # the rerun: same suite name, cheap cells
    rerun = subprocess.run([*command, "--workers", "1"], cwd=tmp_path, env=cli_env(MLFLOW_TRACKING_URI=uri),
                           capture_output=True, text=True, timeout=WAIT_S)
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    assert "Marked stale RUNNING run" in rerun.stdout and "is gone" in rerun.stdout
    after = runs(uri)
    assert not [r for r in after if r.info.status == "RUNNING"], [(r.info.run_name, r.data.tags.get("medtl.stage")) for r in after]
    suites = sorted((r.info.start_time, r.info.status) for r in after if r.data.tags.get("medtl.stage") == "suite")
    assert [s for _, s in suites] == ["KILLED", "FINISHED"]


def test_a_signal_inside_a_store_call_waits_for_the_call_to_end():
    # An exception raised in the midst of SQLAlchemy / MLflow store code can leave SQLite's write lock held, and
    # recording the runs KILLED then fails with "database is locked" after the 20 s busy timeout. The handler lets
    # the store call finish and stops right after it.
    import os

    from benchmark.run.signals import stop_on_signals
    from tracking.runs import Interrupted

    namespace: dict = {}
    # A stand-in for a store call: code whose file lies under sqlalchemy/, running bytecode while the signal arrives.
    exec(compile("def commit(kill, steps):\n    kill()\n    for _ in range(steps):\n        pass\n    return 'committed'\n",
                 os.path.join(os.sep, "site-packages", "sqlalchemy", "engine", "base.py"), "exec"), namespace)
    finished = []
    with pytest.raises(Interrupted) as info, stop_on_signals():
        finished.append(namespace["commit"](lambda: os.kill(os.getpid(), signal.SIGINT), 3_000_000))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # the signal comes back within RETRY_S, outside the store call
            time.sleep(0.01)
    assert finished == ["committed"] and info.value.signum == signal.SIGINT


def test_lightnings_own_sigterm_stop_ends_a_fit_as_every_interrupted_cell_does():
    # Lightning's SIGTERM handler runs before medtl's; when medtl's puts the signal off (store call above), Lightning
    # stops its loop with SIGTERMException (a SystemExit, exit 0), which must end the cell as Interrupted (143).
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    from tasks.training.fit import _sigterm_interrupts
    from tracking.runs import Interrupted

    with pytest.raises(Interrupted) as info, _sigterm_interrupts():
        raise SIGTERMException
    assert info.value.signum == signal.SIGTERM and info.value.exit_code == 143

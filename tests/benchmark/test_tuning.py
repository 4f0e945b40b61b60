"""Optuna studies (benchmark/tune/study.py): budget across workers and storages, pruning, validation-only scoring,
failures, SIGKILL and resume, hparams_from and the report's tuning line.

    PYTHONPATH=. python -m pytest -q -n 0 tests/benchmark/test_tuning.py

The PostgreSQL variant needs Debian's `postgresql` package (tests/servers.py starts a server on 127.0.0.1);
without it that variant is skipped with the reason.
"""

from __future__ import annotations

import textwrap

import optuna
import pytest
import torch
from lightning.pytorch.callbacks import Callback
from mlflow.tracking import MlflowClient

from benchmark.plan.suite import load_suite
from benchmark.tune.study import TuneSettings, study_rows, tune_row
from benchmark.tune.trial import HOLD_ENV
from tracking.naming import TRIAL_STATE_TAG as STATE_TAG
from tracking.studies import open_storage
from tests.servers import postgres  # noqa: F401 - a session fixture, used by name

SUITE = """\
name: {name}
target:
  dataset: gen-target
  options: {{size: 32, scale: {scale}}}
folds: 3
seeds: [0]
image_size: 32
backbones: [smallcnn]
strategies: [full]
sources:
  none:
    weights: scratch
hparams:
  epochs: {epochs}
  augment: none
{extra}
throughput: {{batch_size: 16, warmup: 1, batches: 1}}
"""


def _suite(tmp_path, name="tunetest", epochs=1, extra="", scale=0.3):
    path = tmp_path / f"{name}.yaml"
    path.write_text(SUITE.format(name=name, epochs=epochs, extra=textwrap.dedent(extra), scale=scale))
    return path


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlruns.db")
    monkeypatch.setenv("MEDTL_OPTUNA_STORAGE", f"sqlite:///{tmp_path}/optuna.db")
    return tmp_path


def _trial_runs(uri: str, suite: str, study: str) -> list:
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(f"medtl-{suite}-tuning")
    return client.search_runs([experiment.experiment_id], f"tags.`medtl.study` = '{study}' and tags.`medtl.stage` = 'trial'")


def _study_run(uri: str, suite: str, study: str):
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(f"medtl-{suite}-tuning")
    (run,) = client.search_runs([experiment.experiment_id], f"tags.`medtl.study` = '{study}' and tags.`medtl.stage` = 'study'")
    return run


@pytest.mark.slow
@pytest.mark.parametrize("server", ["sqlite", "postgresql"])
def test_two_workers_fill_the_budget_exactly_and_mlflow_matches(workdir, server, request):
    # PostgreSQL: a real server on 127.0.0.1 (tests/servers.py); a study on it gets its own name, as the database is shared.
    name = "tunetest" if server == "sqlite" else "tunepg"
    row = study_rows(load_suite(_suite(workdir, name=name)))[0]
    storage = f"sqlite:///{workdir}/optuna.db" if server == "sqlite" else request.getfixturevalue("postgres")
    uri = f"sqlite:///{workdir}/mlruns.db"
    study = tune_row(row, TuneSettings(storage=storage, n_trials=4, workers=2, tracking_uri=uri, pruner="none"))
    trials = study.trials
    assert len(trials) == 4 and sorted(t.number for t in trials) == [0, 1, 2, 3]
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    assert len({t.user_attrs["worker"] for t in trials}) == 2  # both processes took trials
    runs = _trial_runs(uri, row.suite, row.name)
    assert sorted(int(r.data.tags["medtl.trial_number"]) for r in runs) == [0, 1, 2, 3]
    by_number = {int(r.data.tags["medtl.trial_number"]): r for r in runs}
    for t in trials:
        run = by_number[t.number]
        assert run.data.tags[STATE_TAG] == "COMPLETE" and run.info.status == "FINISHED"
        assert float(run.data.params["hparams.lr"]) == pytest.approx(t.params["lr"])
        assert run.data.metrics["objective"] == pytest.approx(t.value)
        assert run.data.tags["mlflow.parentRunId"] == _study_run(uri, row.suite, row.name).info.run_id
    # A rerun with the same budget runs nothing more.
    again = tune_row(row, TuneSettings(storage=storage, n_trials=4, tracking_uri=uri, pruner="none"))
    assert len(again.trials) == 4
    # The study's parent run: finished, its trial counts, and Optuna's plots (4 complete trials with drawn values).
    parent = _study_run(uri, row.suite, row.name)
    assert parent.info.status == "FINISHED" and parent.data.tags["medtl.trials.COMPLETE"] == "4"
    assert parent.data.tags["medtl.storage"] == storage and parent.data.tags["best.lr"] == str(study.best_params["lr"])
    plots = {f.path: f.file_size for f in MlflowClient(uri).list_artifacts(parent.info.run_id, "optuna")}
    assert set(plots) == {"optuna/optimization_history.png", "optuna/param_importances.png"}, parent.data.tags
    assert all(size > 1000 for size in plots.values())


def test_budget_lock_on_postgresql_is_held_on_the_server(postgres):
    """Workers on several machines share one budget: on PostgreSQL the lock is the server's, not a file on one machine."""
    from sqlalchemy import create_engine, text

    from benchmark.tune.storage import advisory_key, budget_lock

    other = create_engine(postgres)  # a worker elsewhere: its own connection to the same server
    take = text("SELECT pg_try_advisory_lock(:key)")
    with other.connect() as connection:
        with budget_lock(postgres, "suite.task.backbone.source.strategy"):
            assert connection.execute(take, {"key": advisory_key("suite.task.backbone.source.strategy")}).scalar() is False
            assert connection.execute(take, {"key": advisory_key("another.study")}).scalar() is True  # per study
        assert connection.execute(take, {"key": advisory_key("suite.task.backbone.source.strategy")}).scalar() is True
    other.dispose()


class RecordRows(Callback):
    """Rows (recovered from a pixel-coded task) seen by training and validation batches."""

    def __init__(self) -> None:
        self.rows: set[int] = set()

    def _add(self, batch) -> None:
        x = batch[0][:, 0, 0, 0] * 0.5 + 0.5
        self.rows |= set(torch.round(x * 255).int().tolist())

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._add(batch)

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        self._add(batch)

    def on_test_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        self._add(batch)  # a trial never tests: any row here fails the test below


@pytest.mark.slow
def test_no_test_fold_row_reaches_a_trial_and_the_score_is_validation_mcc(workdir, monkeypatch):
    from tasks.data.splits import make_fold
    from tests.tasks.training.test_protocol import _row_coded_task

    task = _row_coded_task()
    monkeypatch.setattr("benchmark.cell.route.load_cell_task", lambda spec, root, cache=None: task)
    row = study_rows(load_suite(_suite(workdir, epochs=2)))[0]
    record = RecordRows()
    storage, uri = f"sqlite:///{workdir}/optuna.db", f"sqlite:///{workdir}/mlruns.db"
    study = tune_row(row, TuneSettings(storage=storage, n_trials=2, tracking_uri=uri, pruner="none",
                                       space={"lr": lambda t, n: t.suggest_float(n, 1e-3, 1e-2, log=True)},
                                       callbacks=[record]))
    fold = make_fold(task, fold=row.spec.fold, k=row.spec.folds, seed=row.spec.seed)
    assert record.rows == set(fold.train.tolist()) | set(fold.val.tolist())
    assert not record.rows & set(fold.test.tolist())
    client = MlflowClient(uri)
    for run in _trial_runs(uri, row.suite, row.name):
        history = [m.value for m in client.get_metric_history(run.info.run_id, "val/mcc")]
        assert len(history) == 2 and run.data.metrics["objective"] == pytest.approx(max(history))
        assert not any(k.startswith("test/") for k in run.data.metrics)


def _label_coded_task(n: int = 150):
    """Grey level = class (plus a little per-row jitter): a good learning rate separates it within one epoch."""
    import numpy as np

    from tasks.data.images import ArrayStore
    from tasks.data.index import Task, TaskMeta, make_index

    labels = np.arange(n) % 3
    levels = (labels * 100 + np.arange(n) % 20).astype(np.uint8)
    images = np.repeat(levels[:, None, None], 16, 1).repeat(16, 2)
    return Task(TaskMeta("coded", ("a", "b", "c"), "multiclass"), make_index(range(n), labels), ArrayStore(images))


@pytest.mark.slow
@pytest.mark.parametrize("pruner", ["median", "hyperband"])
def test_pruner_stops_hopeless_trials_early(workdir, monkeypatch, pruner):
    import binascii

    task = _label_coded_task()
    monkeypatch.setattr("benchmark.cell.route.load_cell_task", lambda spec, root, cache=None: task)
    # One study per row (shared): the Hyperband bracket arithmetic below depends on the study's name.
    row = study_rows(load_suite(_suite(workdir, name="tunehb" if pruner == "hyperband" else "tunetest", epochs=3,
                                       extra="tune:\n  scope: shared\n")))[0]
    storage, uri = f"sqlite:///{workdir}/optuna.db", f"sqlite:///{workdir}/mlruns.db"
    if pruner == "hyperband":
        # Hyperband over 3 epochs (max_resource = epochs, eta 3) has 2 brackets with budgets 3 and 2; Optuna puts trial n
        # in bracket crc32("<study>_<n>") % 5 < 3 ? 0 : 1 (HyperbandPruner._get_bracket_id). Bracket 1 never stops a
        # 3-epoch trial, so the suite name is chosen to put all four trials in bracket 0 (one rung, after 2 epochs).
        assert all(binascii.crc32(f"{row.name}_{n}".encode()) % 5 < 3 for n in range(4)), row.name
    # Half the space is hopeless: lr 10 with SGD diverges (val/mcc 0); the first two trials are good (enqueued).
    study = optuna.create_study(study_name=row.name, storage=storage, direction="maximize")
    for _ in range(2):
        study.enqueue_trial({"lr": 3e-3})
    for _ in range(2):
        study.enqueue_trial({"lr": 10.0})
    study = tune_row(row, TuneSettings(storage=storage, n_trials=4, tracking_uri=uri, pruner=pruner,
                                       space={"lr": lambda t, n: t.suggest_categorical(n, [3e-3, 10.0])}))
    states = {t.number: t.state for t in study.trials}
    assert len(states) == 4 and states[0] == optuna.trial.TrialState.COMPLETE
    if pruner == "median":  # Hyperband may also stop trial 1 (it promotes only the best of a rung's first trials)
        assert states[1] == optuna.trial.TrialState.COMPLETE
    hopeless = [t for t in study.trials if t.params["lr"] == 10.0]
    assert hopeless and all(t.state == optuna.trial.TrialState.PRUNED for t in hopeless)
    assert all(t.user_attrs["epochs_trained"] < 3 for t in hopeless)
    runs = {int(r.data.tags["medtl.trial_number"]): r for r in _trial_runs(uri, row.suite, row.name)}
    assert all(runs[t.number].data.tags[STATE_TAG] == "PRUNED" for t in hopeless)
    # MLflow shows a pruned trial's run as FINISHED (green): its name says pruned, a complete one's does not.
    assert {runs[t.number].info.run_name for t in hopeless} == {f"{row.short} / trial {t.number} (pruned)" for t in hopeless}
    assert runs[0].info.run_name == f"{row.short} / trial 0"


@pytest.mark.slow
def test_hparams_from_optuna_uses_the_best_trial_and_the_report_says_what_was_tuned(workdir):
    from benchmark.run.runner import run_suite

    # tune.scope shared: one study for the row, used by all 3 folds (nested tuning: the test below this one).
    path = _suite(workdir, name="tuned", extra="hparams_from: optuna\ntune_budget: 2\ntune:\n  scope: shared\n")
    uri = f"sqlite:///{workdir}/mlruns.db"
    outcome = run_suite(path, uri=uri, accelerator="cpu", echo=lambda *a: None)
    assert outcome.exit_code == 0
    study = optuna.load_study(study_name=study_rows(outcome.suite)[0].name, storage=f"sqlite:///{workdir}/optuna.db")
    assert len(study.trials) == 2
    best = study.best_params
    client = MlflowClient(uri)
    parent = client.get_run(outcome.parent_run_id)
    assert parent.data.tags["medtl.tune_budget"] == "2"
    experiment = client.get_experiment_by_name("medtl-tuned")
    cells = client.search_runs([experiment.experiment_id], "tags.`medtl.stage` = 'finetune'")
    assert len(cells) == 3
    for run in cells:
        for name, value in best.items():
            assert run.data.params[f"hparams.{name}"] == str(value), name
        assert run.data.tags["medtl.tune_scope"] == "shared"  # what the report labels optimistic
    # The suite's report (written at the end of the run) says which row was tuned, how, and that no test row was used.
    report = (workdir / "reports" / "tuned" / "report.md").read_text()
    line = next(p for p in report.splitlines() if p.startswith("Tuning"))
    assert "the test fold never entered tuning" in line
    assert (f"scratch/smallcnn/full: 2 trials (2 complete, 0 pruned, 0 failed; budget 2) on storage sqlite:///{workdir}/optuna.db, "
            f"trained on fold 0's training rows and scored on its validation rows; best trial {study.best_trial.number} ") in line
    assert "whose values 3 of its 3 finished cells use" in line
    assert "Tuning" in (workdir / "reports" / "tuned" / "report.html").read_text()


def _journal_study(path, name: str) -> list:
    """The study's trials as a fresh process would read them from the journal file."""
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    try:
        return optuna.load_study(study_name=name, storage=JournalStorage(JournalFileBackend(str(path)))).trials
    except KeyError:  # not created yet
        return []


@pytest.mark.slow
def test_sigkill_mid_trial_then_rerun_completes_the_budget(workdir):
    """Two workers on a journal file; trial 1 is SIGKILLed mid-run (it waits, after its first epoch, to be killed)."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    path = _suite(workdir, name="killed", epochs=2, extra="tune:\n  scope: shared\n")  # one study: the rerun completes only it
    storage, uri = workdir / "optuna-journal.log", f"sqlite:///{workdir}/mlruns.db"
    command = [sys.executable, "-m", "benchmark.cli", "tune", str(path), "--n-trials", "3", "--storage", str(storage),
               "--tracking-uri", uri, "--pruner", "none"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    marker = workdir / "trial-1-held"
    log = (workdir / "first.log").open("w")
    proc = subprocess.Popen([*command, "--workers", "2"], env={**env, HOLD_ENV: f"1:{marker}"}, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    name = study_rows(load_suite(path))[0].name
    state = optuna.trial.TrialState
    try:
        # The signal: trial 1 has logged an epoch and waits (marker), the storage shows it RUNNING with trials 0 and 2
        # COMPLETE (the other worker spent the budget and left), and its MLflow run is open. Polled, never timed.
        deadline = time.monotonic() + 300
        while True:
            assert proc.poll() is None, f"exited {proc.returncode} before trial 1 was held: {(workdir / 'first.log').read_text()[-3000:]}"
            assert time.monotonic() < deadline, "trial 1 was not held within 300 s"
            trials = {t.number: t.state for t in _journal_study(storage, name)}
            assert state.FAIL not in trials.values(), (workdir / "first.log").read_text()[-3000:]
            if marker.exists() and trials == {0: state.COMPLETE, 1: state.RUNNING, 2: state.COMPLETE}:
                runs = {r.data.tags["medtl.trial_number"]: r.info.status for r in _trial_runs(uri, "killed", name)}
                if runs.get("1") == "RUNNING":
                    break
            time.sleep(0.5)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the command and both workers
        proc.wait(timeout=60)
        log.close()
    assert {t.number: t.state for t in _journal_study(storage, name)}[1] == state.RUNNING  # killed mid-trial, never told

    # The rerun (one worker: a spawned pair would only add start-up time) finds the dead trial and completes the budget.
    rerun = subprocess.run([*command, "--workers", "1"], env=env, capture_output=True, text=True, timeout=400)
    assert rerun.returncode == 0, rerun.stdout[-2000:] + rerun.stderr[-2000:]
    assert "trial 1 was left RUNNING by a process that is gone; marked FAIL" in rerun.stdout
    trials = _journal_study(storage, name)
    assert [t.number for t in trials] == [0, 1, 2, 3]  # the budget completed once, nothing duplicated
    assert [t.state for t in trials] == [state.COMPLETE, state.FAIL, state.COMPLETE, state.COMPLETE]
    assert trials[1].user_attrs["worker"] != trials[2].user_attrs["worker"]  # two workers took the first run's trials
    runs = {int(r.data.tags["medtl.trial_number"]): r for r in _trial_runs(uri, "killed", name)}
    assert sorted(runs) == [0, 1, 2, 3]
    assert runs[1].info.status == "KILLED" and runs[1].data.tags[STATE_TAG] == "FAIL"
    for n in (0, 2, 3):
        assert runs[n].info.status == "FINISHED" and runs[n].data.tags[STATE_TAG] == "COMPLETE"
        assert float(runs[n].data.params["hparams.lr"]) == pytest.approx(trials[n].params["lr"])
        assert runs[n].data.metrics["objective"] == pytest.approx(trials[n].value)
    assert _study_run(uri, "killed", name).info.status == "FINISHED"


@pytest.mark.slow
def test_repeated_trial_failures_stop_tune_with_a_clear_error(workdir, monkeypatch, capfd):
    from benchmark.cli import main

    # A broken search space: every trial draws a dropout above its valid range and fails before it trains.
    monkeypatch.setattr("benchmark.tune.study.search_space", lambda strategy: {"dropout": lambda t, n: t.suggest_float(n, 2.0, 3.0)})
    path = _suite(workdir, name="broken")
    storage, uri = f"sqlite:///{workdir}/optuna.db", f"sqlite:///{workdir}/mlruns.db"
    code = main(["tune", str(path), "--n-trials", "6", "--storage", storage, "--tracking-uri", uri])
    err = capfd.readouterr().err
    assert code == 1
    assert "Traceback" not in err
    name = study_rows(load_suite(path))[0].name
    (message,) = [line for line in err.splitlines() if line.startswith("medtl: error:")]
    assert f"study {name} (storage {storage}): 3 trials in a row failed, the last (trial 2) with ValueError: " in message
    assert "hyperparameter 'dropout' must be between 0.0 and 0.9" in message and "Fix:" in message
    trials = optuna.load_study(study_name=name, storage=open_storage(storage)).trials
    assert [t.state for t in trials] == [optuna.trial.TrialState.FAIL] * 3  # it stopped; it did not spend the budget
    parent = _study_run(uri, "broken", name)
    assert parent.info.status == "FAILED" and parent.data.tags["medtl.error"] in message
    runs = _trial_runs(uri, "broken", name)
    assert sorted(r.info.status for r in runs) == ["FAILED"] * 3
    assert all("dropout" in r.data.tags["medtl.error"] for r in runs)


def test_an_unreachable_storage_fails_with_the_fix_before_any_study_run(workdir, capfd):
    # Checked before any study exists (issue 21): exit 2, the storage with its password hidden, the cause and the fix,
    # and no study run left behind (before, a FAILED study run recorded the same error).
    from benchmark.cli import main
    from tests.servers import free_port

    path = _suite(workdir, name="nostore")
    port = free_port()
    storage, uri = f"postgresql+psycopg2://medtl:secret@127.0.0.1:{port}/optuna", f"sqlite:///{workdir}/mlruns.db"
    code = main(["tune", str(path), "--storage", storage, "--tracking-uri", uri])
    err = capfd.readouterr().err
    assert code == 2 and "Traceback" not in err and "secret" not in err
    (message,) = [line for line in err.splitlines() if line.startswith("medtl: error:")]
    assert f"Optuna storage postgresql+psycopg2://medtl:***@127.0.0.1:{port}/optuna (from --storage) cannot be reached" in message
    assert f"nothing listens at 127.0.0.1:{port}" in message and "Fix: start PostgreSQL there" in message
    experiment = MlflowClient(uri).get_experiment_by_name("medtl-nostore-tuning")
    assert experiment is None or not MlflowClient(uri).search_runs([experiment.experiment_id])

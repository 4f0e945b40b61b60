"""Optuna studies (benchmark/tuning.py): budget across workers, pruning, validation-only scoring, hparams_from.

    PYTHONPATH=. python -m pytest -q -n 0 tests/benchmark/test_tuning.py
"""

from __future__ import annotations

import textwrap

import optuna
import pytest
import torch
from lightning.pytorch.callbacks import Callback
from mlflow.tracking import MlflowClient

from benchmark.suite import load_suite
from benchmark.tuning import STATE_TAG, TuneSettings, study_rows, tune_row

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


def test_two_workers_fill_the_budget_exactly_and_mlflow_matches(workdir):
    row = study_rows(load_suite(_suite(workdir)))[0]
    storage, uri = f"sqlite:///{workdir}/optuna.db", f"sqlite:///{workdir}/mlruns.db"
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
    # A rerun with the same budget runs nothing more.
    again = tune_row(row, TuneSettings(storage=storage, n_trials=4, tracking_uri=uri, pruner="none"))
    assert len(again.trials) == 4


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


def test_no_test_fold_row_reaches_a_trial_and_the_score_is_validation_mcc(workdir, monkeypatch):
    from tasks.data.splits import make_fold
    from tests.tasks.training.test_protocol import _row_coded_task

    task = _row_coded_task()
    monkeypatch.setattr("benchmark.cell.load_cell_task", lambda spec, root, cache=None: task)
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


def test_pruner_stops_hopeless_trials_early(workdir, monkeypatch):
    task = _label_coded_task()
    monkeypatch.setattr("benchmark.cell.load_cell_task", lambda spec, root, cache=None: task)
    row = study_rows(load_suite(_suite(workdir, epochs=3)))[0]
    storage, uri = f"sqlite:///{workdir}/optuna.db", f"sqlite:///{workdir}/mlruns.db"
    # Half the space is hopeless: lr 10 with SGD diverges (val/mcc 0); the first two trials are good (enqueued).
    study = optuna.create_study(study_name=row.name, storage=storage, direction="maximize")
    for _ in range(2):
        study.enqueue_trial({"lr": 3e-3})
    for _ in range(2):
        study.enqueue_trial({"lr": 10.0})
    study = tune_row(row, TuneSettings(storage=storage, n_trials=4, tracking_uri=uri, pruner="median",
                                       space={"lr": lambda t, n: t.suggest_categorical(n, [3e-3, 10.0])}))
    states = {t.number: t.state for t in study.trials}
    assert [states[n] for n in (0, 1)] == [optuna.trial.TrialState.COMPLETE] * 2
    hopeless = [t for t in study.trials if t.params["lr"] == 10.0]
    assert hopeless and all(t.state == optuna.trial.TrialState.PRUNED for t in hopeless)
    assert all(t.user_attrs["epochs_trained"] < 3 for t in hopeless)
    runs = {int(r.data.tags["medtl.trial_number"]): r for r in _trial_runs(uri, row.suite, row.name)}
    assert all(runs[t.number].data.tags[STATE_TAG] == "PRUNED" for t in hopeless)


def test_hparams_from_optuna_uses_the_best_trial(workdir):
    from benchmark.runner import run_suite

    path = _suite(workdir, name="tuned", extra="hparams_from: optuna\ntune_budget: 2\n")
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


@pytest.mark.skip(reason="timing race: on a loaded or fast machine the kill misses trial 1 (seen in CI and locally); to be made deterministic under issue 11")
def test_sigkill_mid_trial_then_rerun_completes_the_budget(workdir):
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    path = _suite(workdir, name="killed", epochs=3)
    storage, uri = f"sqlite:///{workdir}/optuna.db", f"sqlite:///{workdir}/mlruns.db"
    command = [sys.executable, "-m", "benchmark.cli", "tune", str(path), "--n-trials", "3", "--storage", storage,
               "--tracking-uri", uri, "--pruner", "none"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    name = study_rows(load_suite(path))[0].name
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline:  # wait until trial 1 is running (trial 0 finished)
            time.sleep(1)
            try:
                trials = optuna.load_study(study_name=name, storage=storage).trials
            except KeyError:
                continue
            if any(t.number == 1 and t.state == optuna.trial.TrialState.RUNNING for t in trials):
                break
        else:
            pytest.fail("trial 1 never started within 240 s")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    # On a fast machine trial 1 can end before the kill lands: the trial left RUNNING is the one killed.
    (killed,) = [t.number for t in optuna.load_study(study_name=name, storage=storage).trials
                 if t.state == optuna.trial.TrialState.RUNNING]
    rerun = subprocess.run(command, env=env, capture_output=True, text=True, timeout=400)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert f"trial {killed} was left RUNNING by a process that is gone; marked FAIL" in rerun.stdout
    trials = optuna.load_study(study_name=name, storage=storage).trials
    states = [t.state.name for t in trials]
    assert states.count("COMPLETE") == 3 and states.count("FAIL") == 1 and trials[killed].state.name == "FAIL"
    assert len({t.number for t in trials}) == len(trials) == 4
    runs = {int(r.data.tags["medtl.trial_number"]): r for r in _trial_runs(uri, "killed", name)}
    assert sorted(runs) == [0, 1, 2, 3]
    assert runs[killed].info.status == "KILLED" and runs[killed].data.tags[STATE_TAG] == "FAIL"
    assert all(runs[n].data.tags[STATE_TAG] == "COMPLETE" for n in {0, 1, 2, 3} - {killed})

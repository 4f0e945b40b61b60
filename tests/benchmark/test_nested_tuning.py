"""Nested tuning (benchmark/plan/tuning.py): one study per (row, outer fold), tuned on that fold's training rows only,
and each fold's cells use their own study's best trial.

    PYTHONPATH=. python -m pytest -q -n 0 tests/benchmark/test_nested_tuning.py
"""

from __future__ import annotations

import optuna
import pytest
from mlflow.tracking import MlflowClient

from benchmark.plan.suite import SuiteError, load_suite
from benchmark.plan.tuning import cell_study, effective_scope
from benchmark.tune.study import TuneSettings, study_rows, tune_row
from tests.benchmark.test_tuning import RecordRows, _suite, workdir  # noqa: F401 - workdir: a fixture, used by name


def test_a_k_fold_suite_has_one_study_per_outer_fold_and_shared_or_official_one_per_row(workdir):
    from dataclasses import replace

    nested = load_suite(_suite(workdir, name="nest"))
    rows = study_rows(nested)
    assert nested.tune_scope == "nested"
    assert [(r.spec.seed, r.spec.fold) for r in rows] == [(0, 0), (0, 1), (0, 2)]
    assert [r.name for r in rows] == [f"nest.gen-target.smallcnn.none.full.seed0.fold{f}" for f in range(3)]
    # Each cell maps to the study of its own outer fold.
    assert {c.fold: cell_study("nest", "nested", c) for c in nested.finetune_cells} == {r.spec.fold: r.name for r in rows}
    # Another seed draws another k-fold split: its folds are other outer folds, with studies of their own.
    assert cell_study("nest", "nested", replace(rows[1].spec, seed=1)) == "nest.gen-target.smallcnn.none.full.seed1.fold1"
    shared = load_suite(_suite(workdir, name="share", extra="tune:\n  scope: shared\n"))
    assert [r.name for r in study_rows(shared)] == ["share.gen-target.smallcnn.none.full"]
    assert effective_scope("nested", 0) == "official" and effective_scope("shared", 3) == "shared"
    with pytest.raises(SuiteError, match="scope"):
        load_suite(_suite(workdir, name="bad", extra="tune:\n  scope: everywhere\n"))


@pytest.mark.slow
def test_no_test_row_of_fold_f_reaches_its_study_and_fold_f_cells_use_its_best_trial(workdir, monkeypatch):
    from benchmark.run.runner import run_suite
    from tasks.data.splits import make_fold
    from tests.tasks.training.test_protocol import _row_coded_task

    task = _row_coded_task()
    monkeypatch.setattr("benchmark.cell.route.load_cell_task", lambda spec, root, cache=None: task)
    path = _suite(workdir, name="nested", extra="hparams_from: optuna\n")
    storage, uri = f"sqlite:///{workdir}/optuna.db", f"sqlite:///{workdir}/mlruns.db"
    with pytest.raises(SuiteError, match=r"nested\.gen-target\.smallcnn\.none\.full\.seed0\.fold0"):
        load_suite(path)  # hparams_from: optuna before tuning: the error names the fold's study
    # The studies are listed without loading the suite's values: a copy of the suite without hparams_from.
    (workdir / "plain").mkdir()
    rows = study_rows(load_suite(_suite(workdir / "plain", name="nested")))
    assert len(rows) == 3
    best = {}
    for row in rows:
        record = RecordRows()  # every row index a trial's training and validation batches hold (and any test batch)
        # A TPE seed per fold, so each study draws other values and a cell using another fold's best is caught.
        study = tune_row(row, TuneSettings(storage=storage, n_trials=2, tracking_uri=uri, pruner="none", seed=10 * row.spec.fold,
                                           space={"lr": lambda t, n: t.suggest_float(n, 1e-3, 1e-1, log=True)},
                                           callbacks=[record]), echo=lambda *a: None)
        fold = make_fold(task, fold=row.spec.fold, k=row.spec.folds, seed=row.spec.seed)
        assert record.rows == set(fold.train.tolist()) | set(fold.val.tolist())
        assert not record.rows & set(fold.test.tolist()), f"fold {row.spec.fold}'s test rows reached its study"
        assert len(study.trials) == 2
        best[row.spec.fold] = study.best_params
    assert len({b["lr"] for b in best.values()}) == 3  # three studies, three different best values

    outcome = run_suite(path, uri=uri, accelerator="cpu", echo=lambda *a: None)
    assert outcome.exit_code == 0
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("medtl-nested")
    cells = client.search_runs([experiment.experiment_id], "tags.`medtl.stage` = 'finetune'")
    assert sorted(int(r.data.params["fold"]) for r in cells) == [0, 1, 2]
    for run in cells:
        fold = int(run.data.params["fold"])
        assert float(run.data.params["hparams.lr"]) == best[fold]["lr"], fold
        assert run.data.tags["medtl.tune_scope"] == "nested"
    # The study runs say which fold they tuned.
    tuning = client.get_experiment_by_name("medtl-nested-tuning")
    studies = client.search_runs([tuning.experiment_id], "tags.`medtl.stage` = 'study'")
    assert sorted((r.data.tags["medtl.fold"], r.data.tags["medtl.tune_scope"]) for r in studies) == [
        ("0", "nested"), ("1", "nested"), ("2", "nested")]
    assert optuna.get_all_study_names(storage) and len(optuna.get_all_study_names(storage)) == 3

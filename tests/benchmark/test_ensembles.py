"""Ensembles (Hicks et al.'s averaged models, the survey's multi-source ensembles) as cells of their own.

    .venv/bin/python -m pytest tests/benchmark/test_ensembles.py -q
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from mlflow.tracking import MlflowClient

from benchmark.cli import main
from benchmark.cell.ensemble import average_predictions
from benchmark.plan.ensembles import EnsembleError
from tracking.naming import suite_experiment
from benchmark.plan.suite import SuiteError, load_suite
from tasks.data import TaskMeta
from tasks.training.evaluation import predictions_table
from tasks.training.metrics import score
from tests.benchmark.suites import write_suite

NAMES = ["a", "b", "c"]


def _table(probs: np.ndarray, targets: np.ndarray) -> pd.DataFrame:
    return predictions_table([f"img{i}" for i in range(len(targets))], probs, targets, NAMES, multilabel=False)


def test_an_ensemble_of_identical_models_equals_the_single_model():
    rng = np.random.default_rng(0)
    targets = rng.integers(0, 3, 60)
    probs = rng.dirichlet(np.ones(3), 60) * 0.5 + np.eye(3)[targets] * 0.5
    table = pd.read_csv(pd.io.common.StringIO(_table(probs, targets).to_csv(index=False)))  # as read back from MLflow
    items, averaged, got_targets = average_predictions([table, table, table], NAMES, multilabel=False)
    meta = TaskMeta("t", tuple(NAMES), "multiclass")
    single, single_cm = score(torch.tensor(probs), torch.tensor(targets), meta)
    ensemble, ensemble_cm = score(torch.tensor(averaged), torch.tensor(got_targets), meta)
    assert ensemble == pytest.approx(single, abs=1e-5)
    assert torch.equal(single_cm, ensemble_cm) and len(items) == 60


def test_averaging_is_the_mean_of_member_probabilities():
    targets = np.array([0, 1])
    one = _table(np.array([[0.9, 0.1, 0.0], [0.2, 0.2, 0.6]]), targets)
    two = _table(np.array([[0.1, 0.9, 0.0], [0.2, 0.6, 0.2]]), targets)
    _, averaged, _ = average_predictions([one, two], NAMES, multilabel=False)
    assert averaged == pytest.approx(np.array([[0.5, 0.5, 0.0], [0.2, 0.4, 0.4]]))


def test_members_of_other_test_rows_are_refused():
    targets = np.array([0, 1])
    one = _table(np.full((2, 3), 1 / 3), targets)
    other = one.assign(item=["x", "y"])
    with pytest.raises(EnsembleError, match="other test rows"):
        average_predictions([one, other], NAMES, multilabel=False)


def test_an_ensemble_needs_its_member_strategy_two_members_and_a_shared_test_fold(tmp_path):
    with pytest.raises(SuiteError, match="add 'full' to 'strategies'"):
        load_suite(write_suite(tmp_path, strategies=["linear", "ensemble-sources"]))
    with pytest.raises(SuiteError, match="at least 2 backbones"):
        load_suite(write_suite(tmp_path, strategies=["full", "ensemble-backbones"]))
    with pytest.raises(SuiteError, match="every seed draws its own folds"):
        load_suite(write_suite(tmp_path, strategies=["full", "ensemble-seeds"], seeds=[0, 1]))


def _scored(uri, suite) -> dict:
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(suite_experiment(suite.name))
    return {r.data.tags["medtl.spec_hash"]: r for r in client.search_runs([exp.experiment_id])
            if r.data.tags.get("medtl.stage") == "finetune"}


def _check_ensemble_runs(uri, suite) -> dict:
    client, runs = MlflowClient(uri), _scored(uri, suite)
    for cell in (c for c in suite.cells if c.members):
        run = runs[cell.hash]
        assert run.info.status == "FINISHED"
        members = [runs[h] for h in cell.members]
        # cost: the members run one after another per image
        assert run.data.metrics["test/fps"] == pytest.approx(1 / sum(1 / m.data.metrics["test/fps"] for m in members))
        assert -1 <= run.data.metrics["test/mcc"] <= 1 and run.data.metrics["ensemble/members"] == len(members)
        assert run.data.metrics["cost/params"] == sum(m.data.metrics["cost/params"] for m in members)
        assert {a.path for a in client.list_artifacts(run.info.run_id, "test")} >= {
            "test/predictions.csv", "test/confusion_matrix.csv"}
    return runs


def test_source_and_backbone_ensembles_are_scored_and_logged(tmp_path, mlflow_uri):
    path = write_suite(tmp_path, name="ens", backbones=["smallcnn", "designed_cnn2"],
                       strategies=["full", "ensemble-sources", "ensemble-backbones"], hparams={"epochs": 1, "batch_size": 32})
    suite = load_suite(path)
    ensembles = [c for c in suite.cells if c.members]
    assert len(ensembles) == 8  # sources: per (backbone, fold) = 2 x 2; backbones: per (source, fold) = 2 x 2
    assert main(["benchmark", str(path)]) == 0
    runs = _check_ensemble_runs(mlflow_uri, suite)
    params = [runs[c.hash].data.params for c in ensembles]
    assert {p["source"] for p in params if p["strategy"] == "ensemble-sources"} == {"gen-general+none"}
    assert {p["backbone"] for p in params if p["strategy"] == "ensemble-backbones"} == {"designed_cnn2+smallcnn"}


def test_seed_ensembles_on_an_official_split(tmp_path, mlflow_uri, shared_data):
    # Hicks et al.'s averaged models: the seeds of one row, on BreastMNIST's fixed test split.
    path = write_suite(tmp_path, name="ens-seeds", target={"dataset": "medmnist", "path": "breastmnist/breastmnist.npz", "options": {"allow_duplicates": True}},
                       folds="official", seeds=[0, 1, 2], sources={"none": {"weights": "scratch"}},
                       strategies=["full", "ensemble-seeds"], hparams={"epochs": 1, "batch_size": 64})
    assert main(["benchmark", str(path), "--data-root", str(shared_data)]) == 0
    suite = load_suite(path)
    (ensemble,) = [c for c in suite.cells if c.members]
    assert len(ensemble.members) == 3
    runs = _check_ensemble_runs(mlflow_uri, suite)
    assert runs[ensemble.hash].data.metrics["data/test_rows"] == 156

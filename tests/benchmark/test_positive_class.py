"""`target.positive_class`: Rahman's pneumonia-class recall, precision and F1, for every strategy, checked before any run.

    PYTHONPATH=. .venv/bin/python -m pytest -q tests/benchmark/test_positive_class.py
"""

from __future__ import annotations

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from sklearn.metrics import precision_recall_fscore_support

from benchmark.cli import main
from tests.benchmark.suites import write_suite
from tracking.naming import suite_experiment

pytestmark = pytest.mark.fixtures


def _suite(tmp_path, data_root, positive_class: str):
    return write_suite(tmp_path, name="positive", folds="official", image_size=28, backbones=["smallcnn"],
                       strategies=["full", "svm"], sources={"scratch": {"weights": "scratch"}},
                       target={"dataset": "medmnist", "path": "breastmnist/breastmnist.npz",
                               "options": {"allow_duplicates": True}, "positive_class": positive_class},
                       hparams={"epochs": 1, "batch_size": 64})


def test_every_strategy_reports_the_positive_class_as_sklearn_scores_it(tmp_path, shared_data, mlflow_uri, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["benchmark", str(_suite(tmp_path, shared_data, "malignant")), "--data-root", str(shared_data)]) == 0
    client = MlflowClient(mlflow_uri)
    runs = client.search_runs([client.get_experiment_by_name(suite_experiment("positive")).experiment_id],
                              "tags.`medtl.stage` = 'finetune'")
    assert {r.data.params["strategy"] for r in runs} == {"full", "svm"}
    for run in runs:
        table = pd.read_csv(client.download_artifacts(run.info.run_id, "test/predictions.csv", str(tmp_path)))
        # predictions.csv holds class ids: malignant is class 0 of BreastMNIST ('malignant', 'normal, benign').
        prec, rec, f1, _ = precision_recall_fscore_support(table["target"], table["predicted"], labels=[0], zero_division=0)
        metrics = run.data.metrics
        assert metrics["test/pos/rec"] == pytest.approx(rec[0], abs=1e-6)
        assert metrics["test/pos/prec"] == pytest.approx(prec[0], abs=1e-6)
        assert metrics["test/pos/f1"] == pytest.approx(f1[0], abs=1e-6)


def test_a_positive_class_the_target_lacks_fails_before_any_run(tmp_path, shared_data, mlflow_uri, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["benchmark", str(_suite(tmp_path, shared_data, "pneumonia")), "--data-root", str(shared_data)]) == 2
    err = capsys.readouterr().err
    assert "target.positive_class 'pneumonia' is not a class of the target (it has malignant, normal, benign)" in err
    assert MlflowClient(mlflow_uri).get_experiment_by_name(suite_experiment("positive")) is None

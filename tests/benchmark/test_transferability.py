"""Transferability before training: scores in a suite run (parent run, shared feature cache, report) and the check
of the scores against the fine-tuned order."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from scipy import stats

from benchmark.cell import transferability as cell_transferability
from benchmark.plan.suite import load_suite
from benchmark.report.transferability import agreement
from tests.benchmark.suites import write_suite
from tracking.naming import STAGE_TAG, SUITE_TAG, TRANSFERABILITY, TRANSFERABILITY_TABLE, suite_experiment


def _suite(tmp_path, **overrides):
    return write_suite(tmp_path, name="transfer", strategies=["svm"], hparams={"svm_cs": "1"}, **{
        "sources": {"none": {"weights": "scratch"},
                    "gen-general": {"pretrain": {"dataset": "gen-general", "options": {"size": 32, "per_class": 20},
                                                 "hparams": {"epochs": 1}}}}, **overrides})


def _board(rows):
    return pd.DataFrame([{"source": s, "backbone": b, "strategy": "full", "fraction": 1.0, "mcc_mean": m} for s, b, m in rows])


def _compared(pairs):
    return pd.DataFrame([{"family": "source", "a": a, "b": b, "test_family": "corrected t-test", "significant": sig}
                         for a, b, sig in pairs])


def test_agreement_gives_kendall_tau_per_setting_and_the_best_tier():
    board = _board([("imagenet", "r18", 0.8), ("medical", "r18", 0.75), ("scratch", "r18", 0.3), ("imagenet", "vgg", 0.6),
                    ("scratch", "vgg", 0.5)])
    scores = pd.DataFrame({"source": ["imagenet", "medical", "scratch", "imagenet", "scratch"],
                           "backbone": ["r18", "r18", "r18", "vgg", "vgg"], "logme": [0.2, 0.5, -0.4, 0.1, 0.3],
                           "h_score": [1.5, 1.2, 0.1, 0.4, 0.9]})
    compared = _compared([("imagenet/r18/full", "medical/r18/full", False), ("imagenet/r18/full", "scratch/r18/full", True),
                          ("imagenet/vgg/full", "scratch/vgg/full", True)])
    table = agreement(board, scores, compared, "corrected t-test").set_index("setting")
    r18 = table.loc["backbone=r18, strategy=full, fraction=1.0"]
    assert r18["kendall_tau_logme"] == pytest.approx(stats.kendalltau([0.2, 0.5, -0.4], [0.8, 0.75, 0.3]).statistic)
    assert r18["kendall_tau_h_score"] == pytest.approx(1.0)
    # LogME picks `medical`, which is not significantly worse than the best (imagenet): no loss choosing by LogME.
    assert r18["top_logme_source"] == "medical" and r18["top_source_in_best_tier"] == "yes"
    assert r18["best_tier"] == "imagenet/r18/full, medical/r18/full"
    vgg = table.loc["backbone=vgg, strategy=full, fraction=1.0"]
    assert vgg["top_logme_source"] == "scratch" and vgg["top_source_in_best_tier"] == "no" and vgg["kendall_tau_logme"] == -1.0


def test_turned_off_it_does_nothing(tmp_path):
    suite = load_suite(_suite(tmp_path, transferability=False))
    assert suite.transferability is False
    assert cell_transferability.suite_transferability(suite, None, "no-parent") is None  # ctx is never touched
    assert load_suite(_suite(tmp_path)).transferability is True  # default on


def test_failures_are_warnings_never_errors(tmp_path, mlflow_uri, monkeypatch):
    from benchmark.run.runner import prepare_suite
    from tracking import start_run

    suite, ctx, experiment_id = prepare_suite(_suite(tmp_path), accelerator="cpu")
    parent = start_run(ctx.client, experiment_id, name="suite", tags={SUITE_TAG: suite.name, STAGE_TAG: "suite"})

    def broken(*args, **kwargs):
        raise RuntimeError("planted")

    monkeypatch.setattr(cell_transferability, "score_pair", broken)
    with pytest.warns(UserWarning, match="planted"):
        table = cell_transferability.suite_transferability(suite, ctx, parent, echo=lambda *_: None)
    assert len(table) == 2 and table["logme"].isna().all() and table["error"].str.contains("planted").all()
    monkeypatch.setattr(cell_transferability, "log_dataframe", broken)
    with pytest.warns(UserWarning, match="the suite goes on"):
        assert cell_transferability.suite_transferability(suite, ctx, parent, echo=lambda *_: None) is None


@pytest.mark.slow
def test_a_suite_scores_each_source_once_before_its_cells_and_the_report_checks_them(tmp_path, mlflow_uri):
    from benchmark.cli import main
    from tasks.data import load_task
    from tasks.data.splits import make_fold

    path = _suite(tmp_path)
    assert main(["benchmark", str(path), "--accelerator", "cpu"]) == 0
    suite = load_suite(path)
    client = MlflowClient(mlflow_uri)
    experiment = client.get_experiment_by_name(suite_experiment(suite.name))
    parent = next(r for r in client.search_runs([experiment.experiment_id]) if r.data.tags.get(STAGE_TAG) == "suite")
    local = client.download_artifacts(parent.info.run_id, f"{TRANSFERABILITY}/{TRANSFERABILITY_TABLE}", str(tmp_path))
    table = pd.read_csv(local).set_index("source")
    assert sorted(table.index) == ["gen-general", "none"] and np.isfinite(table["logme"]).all() and np.isfinite(table["h_score"]).all()
    cell = next(c for c in suite.finetune_cells if c.fold == 0)
    assert (table["rows"] == len(make_fold(load_task("gen-target", None, **cell.options), fold=0, k=2, seed=cell.seed).train)).all()
    assert parent.data.metrics[f"{TRANSFERABILITY}/logme/none/smallcnn"] == pytest.approx(table.loc["none", "logme"])
    # The hook extracted every feature first: each svm cell then found its features in the shared cache.
    cells = [r for r in client.search_runs([experiment.experiment_id]) if r.data.tags.get(STAGE_TAG) == "finetune"]
    assert len(cells) == 4 and all(r.data.metrics["features/cache_hits"] == 1.0 for r in cells)
    report = (tmp_path / "reports" / suite.name / "report.md").read_text()
    assert "## Transferability" in report and "Did the scores predict the order?" in report

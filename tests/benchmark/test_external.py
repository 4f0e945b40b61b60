"""External validation (issue 24 item 4) and the fold ensemble on it (issue 20: Hicks et al.'s 3-averaged run).

    python -m pytest tests/benchmark/test_external.py -q
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from PIL import Image
from scipy.stats import kendalltau, spearmanr
from sklearn.metrics import accuracy_score, matthews_corrcoef

from benchmark.cell.external import load_external
from benchmark.cell.preflight import check_suite_data
from benchmark.cell.route import load_cell_task
from benchmark.cli import main
from benchmark.plan.spec import RunSpec
from benchmark.plan.suite import SuiteError, load_suite
from tasks.data import DataError, load_task
from tasks.data.external import align_classes, development_part, official_test_part
from tests.benchmark.suites import write_suite
from tracking.naming import suite_experiment

CLASS = "lesion_0deg"  # the one class of the planted external set (a gen-target class name)


def _plant(folder, classes: dict[str, int], seed: int = 7) -> list[str]:
    """Class folders of small random PNGs, named siteb_<i>.png so no item looks like a target item; returns the items."""
    rng, items = np.random.default_rng(seed), []
    for name, count in classes.items():
        (folder / name).mkdir(parents=True)
        for i in range(count):
            Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(folder / name / f"siteb_{i}.png")
            items.append(f"{name}/siteb_{i}.png")
    return items


def _external_suite(tmp_path, **overrides):
    target = {"dataset": "gen-target", "options": {"size": 32, "scale": 0.5},
              "external": [{"name": "site-b", "dataset": "class-folders", "path": "site-b"},
                           {"name": "site-c", "dataset": "gen-target", "options": {"size": 32, "scale": 0.25, "seed": 3}}]}
    return write_suite(tmp_path, name="ext", target=target, sources={"scratch": {"weights": "scratch"}},
                       hparams={"epochs": 1, "batch_size": 16}, **overrides)


def test_no_external_set_keeps_every_hash_and_one_changes_it():
    fields = dict(stage="finetune", task="gen-target", task_options={"size": 32}, data_path="", fold=0, folds=2, seed=0,
                  backbone="smallcnn", weights="scratch", source="scratch", strategy="full")
    plain = RunSpec.build(**fields)
    assert RunSpec.build(**fields, external=()).hash == plain.hash
    assert "external" not in plain.identity()
    assert RunSpec.build(**fields, external=[{"name": "site-b", "split": "official"}]).hash != plain.hash


def test_a_fold_ensemble_without_an_external_set_fails_before_any_run(tmp_path, mlflow_uri):
    path = write_suite(tmp_path, name="noext", strategies=["full", "ensemble-folds"])
    with pytest.raises(SuiteError, match="ensemble-folds.*no.*Fix: add target.external"):
        load_suite(path)
    assert main(["benchmark", str(path)]) == 2
    assert MlflowClient(mlflow_uri).get_experiment_by_name(suite_experiment("noext")) is None
    official = write_suite(tmp_path, name="offext", folds="official", strategies=["full", "ensemble-folds"],
                           target={"dataset": "gen-target", "external": [{"name": "t", "split": "official"}]})
    with pytest.raises(SuiteError, match="split: official with folds: official"):
        load_suite(official)


def test_external_class_names_are_checked_before_any_cell(tmp_path):
    _plant(tmp_path / "site-b", {CLASS: 2, "polyp": 2})
    path = write_suite(tmp_path, name="badext", sources={"scratch": {"weights": "scratch"}},
                       target={"dataset": "gen-target", "external": [{"name": "site-b", "dataset": "class-folders", "path": "site-b"}]})
    with pytest.raises(DataError, match=r"'polyp'.*External classes: lesion_0deg, polyp; target classes: lesion_0deg, "
                                        r"lesion_45deg.*Fix: rename"):
        check_suite_data(load_suite(path).cells, tmp_path)


def test_an_external_set_is_read_in_the_target_label_space(tmp_path):
    _plant(tmp_path / "site", {"lesion_90deg": 2, CLASS: 1})
    target = load_task("gen-target").meta
    aligned = align_classes(load_task("class-folders", tmp_path / "site"), target, "here")
    assert aligned.meta.class_names == target.class_names
    labels = dict(zip(aligned.index["item"], aligned.index["label"]))
    assert labels == {f"{CLASS}/siteb_0.png": 0, "lesion_90deg/siteb_0.png": 2, "lesion_90deg/siteb_1.png": 2}


def test_split_official_folds_the_development_rows_and_holds_out_the_test_rows(tmp_path):
    for split, count in (("train", 6), ("test", 3)):
        _plant(tmp_path / "ds" / split, {"a": count, "b": count}, seed=len(split))
    path = write_suite(tmp_path, name="offi", sources={"scratch": {"weights": "scratch"}},
                       target={"dataset": "class-folders", "path": "ds", "external": [{"name": "official-test", "split": "official"}]})
    spec = load_suite(path).finetune_cells[0]
    development = load_cell_task(spec, tmp_path)
    full = load_task("class-folders", tmp_path / "ds")
    test = official_test_part(full)
    assert set(development.index["item"]) == set(development_part(full).index["item"]) == {
        i for i in full.index["item"] if i.startswith("train/")}
    assert set(test.index["item"]) == {i for i in full.index["item"] if i.startswith("test/")} and len(test.index) == 6
    (name, external), = load_external(spec, development.meta, tmp_path)  # what every cell is scored on
    assert name == "official-test" and set(external.index["item"]) == set(test.index["item"])
    with pytest.raises(DataError, match="no official test split"):
        development_part(load_task("gen-target"))


@pytest.mark.slow
def test_external_scores_come_from_the_external_images_and_the_fold_ensemble_averages_them(tmp_path, mlflow_uri):
    items = _plant(tmp_path / "site-b", {CLASS: 6})
    path = _external_suite(tmp_path, strategies=["full", "svm", "ensemble-folds"])
    assert main(["benchmark", str(path), "--data-root", str(tmp_path)]) == 0
    suite, client = load_suite(path), MlflowClient(mlflow_uri)
    experiment = client.get_experiment_by_name(suite_experiment(suite.name))
    runs = {r.data.tags["medtl.spec_hash"]: r for r in client.search_runs([experiment.experiment_id])
            if r.data.tags.get("medtl.stage") == "finetune"}
    site_c = load_task("gen-target", size=32, scale=0.25, seed=3)

    def predictions(run, name):
        return pd.read_csv(client.download_artifacts(run.info.run_id, f"external/{name}/predictions.csv", str(tmp_path)))

    for cell in (c for c in suite.finetune_cells if not c.members):
        run = runs[cell.hash]
        table = predictions(run, "site-b")
        # Only the planted images, all of the one class: no target row leaks into the external scores.
        assert sorted(table["item"]) == sorted(items) and (table["target"] == 0).all()
        metrics = run.data.metrics
        assert metrics["external/site-b/rows"] == 6
        assert metrics["external/site-b/acc_micro"] == pytest.approx(accuracy_score(table["target"], table["predicted"]), abs=1e-6)
        assert "external/site-b/auc" not in metrics  # one class: AUC is undefined, not 0
        other = predictions(run, "site-c")
        assert other["target"].tolist() == site_c.labels.tolist() and metrics["external/site-c/rows"] == len(site_c.index)
        assert metrics["external/site-c/mcc"] == pytest.approx(matthews_corrcoef(other["target"], other["predicted"]), abs=1e-6)
        assert metrics["test/mcc"] == metrics["test/mcc"]  # the in-domain score is still there

    (ensemble,) = [c for c in suite.cells if c.strategy == "ensemble-folds"]
    members = [runs[h] for h in ensemble.members]
    assert {runs[h].data.params["fold"] for h in ensemble.members} == {"0", "1"}
    assert {runs[h].data.params["strategy"] for h in ensemble.members} == {"full"}
    got = predictions(runs[ensemble.hash], "site-c")
    columns = [c for c in got.columns if c.startswith("p:")]
    mean = np.mean([predictions(m, "site-c")[columns].to_numpy(float) for m in members], axis=0)
    assert got[columns].to_numpy(float) == pytest.approx(mean, abs=2e-6)
    metrics = runs[ensemble.hash].data.metrics
    assert metrics["external/site-c/mcc"] == pytest.approx(matthews_corrcoef(site_c.labels, mean.argmax(axis=1)), abs=1e-6)
    assert "test/mcc" not in metrics  # the fold models share no in-domain test rows

    report = (tmp_path / "reports" / "ext" / "report.md")
    if not report.is_file():
        assert main(["report", str(path), "--out", str(report.parent)]) == 0
    text = report.read_text()
    assert "## External validation" in text and "Does the winner hold?" in text
    board = pd.read_csv(report.parent / "leaderboard.csv")
    row = board[board["strategy"] == "ensemble-folds"]
    assert len(row) == 1 and row["external/site-c/mcc_mean"].iloc[0] == pytest.approx(metrics["external/site-c/mcc"])
    full = board[board["strategy"] == "full"]
    fold_runs = [runs[c.hash] for c in suite.finetune_cells if c.strategy == "full"]
    assert full["external/site-b/mcc_mean"].iloc[0] == pytest.approx(np.mean([r.data.metrics["external/site-b/mcc"] for r in fold_runs]))
    both = board.dropna(subset=["mcc_mean", "external/site-c/mcc_mean"])
    assert len(both) == 2  # full and svm; the fold ensemble has no in-domain score
    rho = spearmanr(both["mcc_mean"], both["external/site-c/mcc_mean"]).statistic
    tau = kendalltau(both["mcc_mean"], both["external/site-c/mcc_mean"]).statistic
    assert f"site-c: rank correlation between in-domain and external MCC over 2 rows: Spearman rho = {rho:.3f}" in text
    assert f"Kendall tau = {tau:.3f}" in text

"""Probes on cached frozen features (knn, fewshot): k-NN against scikit-learn and a worked example,
few-shot supports from training rows only, episode statistics, refusals.

    PYTHONPATH=. .venv/bin/python -m pytest tests/tasks/training/test_probes.py -q
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import matthews_corrcoef
from sklearn.neighbors import KNeighborsClassifier

from backbones import create_backbone
from tasks.data import load_task
from tasks.training import Machine, TrainPlan, get_strategy, train_and_test
from tasks.training.features import tap_features
from tasks.training.strategies import StrategyNotApplicable
from tasks.training.strategies import fewshot as fewshot_module
from tasks.training.strategies.fewshot import episode_summary, support_sets
from tasks.training.strategies.knn import KnnVote
from tasks.training.strategies.svm import PooledEncoder
from tests.tasks.training.multilabel_tasks import bands_task


@pytest.fixture(scope="module")
def task():
    return load_task("gen-target", None, scale=0.5, size=32)


def _run(task, name, cache, *, seed=0, **overrides):
    torch.manual_seed(0)
    backbone = create_backbone("smallcnn", "scratch")
    return train_and_test(task, backbone, TrainPlan(fold=0, k=3, seed=seed, hp=get_strategy(name).resolve(overrides), size=32, strategy=name), Machine(accelerator="cpu", feature_cache=cache))


def _encoded(task, result, cache, rows):
    """The features a probe cell reads for `rows`: smallcnn's pooled output, L2-normalised (svm's encoding)."""
    pooled = tap_features(task, result.module.backbone, tap="final", scale=32, pool="gap", cache_dir=cache).array
    return PooledEncoder().transform([pooled[np.asarray(rows)]])


# --- k-NN ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("classes, k", [(2, 7), (4, 5), (3, 1)])
def test_uniform_knn_equals_scikit_learn_cosine_neighbours(classes, k):
    rng = np.random.default_rng(classes)
    x_train, x_test = rng.normal(size=(80, 16)), rng.normal(size=(40, 16))
    y_train = rng.integers(0, classes, 80)
    ours = KnnVote(x_train, y_train, classes, k=k, weighting="uniform").probabilities(x_test)
    reference = KNeighborsClassifier(n_neighbors=k, metric="cosine", algorithm="brute").fit(x_train, y_train)
    np.testing.assert_allclose(ours, reference.predict_proba(x_test), atol=1e-12)
    np.testing.assert_array_equal(ours.argmax(axis=1), reference.predict(x_test))


def test_uniform_multilabel_knn_shares_equal_scikit_learn_per_label():
    rng = np.random.default_rng(3)
    x_train, x_test = rng.normal(size=(60, 8)), rng.normal(size=(20, 8))
    y_train = (rng.random((60, 3)) < 0.4).astype(np.float32)
    ours = KnnVote(x_train, y_train, 3, k=6, weighting="uniform").probabilities(x_test)
    reference = KNeighborsClassifier(n_neighbors=6, metric="cosine", algorithm="brute").fit(x_train, y_train)
    expected = np.stack([p[:, 1] for p in reference.predict_proba(x_test)], axis=1)  # share of neighbours with label j
    np.testing.assert_allclose(ours, expected, atol=1e-12)


def test_weighted_knn_on_a_worked_example():
    # Unit training vectors; the query (0.8, 0.6) has cosine 0.96 with (0.6, 0.8) [class 1], 0.8 with (1, 0)
    # [class 0] and 0.6 with (0, 1) [class 1].
    bank, labels, query = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]]), np.array([0, 1, 1]), np.array([[0.8, 0.6]])
    two = KnnVote(bank, labels, 2, k=2, weighting="exp", temperature=0.1).probabilities(query)[0]
    # k=2: weights e^9.6 (class 1) and e^8 (class 0): class 1 gets 1 / (1 + e^-1.6) = 0.83202.
    np.testing.assert_allclose(two, [0.16798, 0.83202], atol=1e-5)
    three = KnnVote(bank, labels, 2, k=3, weighting="exp", temperature=0.1).probabilities(query)[0]
    # k=3 adds e^6 for class 1: class 0 gets e^-1.6 / (1 + e^-1.6 + e^-3.6) = 0.20190 / 1.22922 = 0.16425.
    np.testing.assert_allclose(three, [0.16425, 0.83575], atol=1e-5)
    np.testing.assert_allclose(KnnVote(bank, labels, 2, k=2, weighting="uniform").probabilities(query)[0], [0.5, 0.5])

    # Weighting can overturn the majority: one identical class-0 neighbour against two at cosine 0.6.
    bank, labels, query = np.array([[1.0, 0.0], [0.6, 0.8], [0.6, -0.8]]), np.array([0, 1, 1]), np.array([[2.0, 0.0]])
    assert KnnVote(bank, labels, 2, k=3, weighting="uniform").probabilities(query)[0].argmax() == 1
    weighted = KnnVote(bank, labels, 2, k=3, weighting="exp", temperature=0.1).probabilities(query)[0]
    np.testing.assert_allclose(weighted[0], 1 / (1 + 2 * math.exp(-4)), atol=1e-9)  # e^10 / (e^10 + 2 e^6) = 0.96466
    # A large temperature tends to uniform voting.
    np.testing.assert_allclose(KnnVote(bank, labels, 2, k=3, temperature=1e6).probabilities(query)[0], [1 / 3, 2 / 3],
                               atol=1e-6)


def test_a_knn_cell_predicts_what_scikit_learn_predicts_on_its_cached_features(task, tmp_path):
    result = _run(task, "knn", tmp_path, knn_k=5, knn_weighting="uniform")
    fold = result.datamodule.fold
    reference = KNeighborsClassifier(n_neighbors=5, metric="cosine", algorithm="brute")
    reference.fit(_encoded(task, result, tmp_path, fold.train), task.labels[fold.train])
    x_test = _encoded(task, result, tmp_path, fold.test)
    probs, targets = (t.numpy() for t in result.module.test_predictions())
    assert list(reference.classes_) == list(range(task.meta.num_classes))
    np.testing.assert_allclose(probs, reference.predict_proba(x_test), atol=1e-6)
    np.testing.assert_array_equal(probs.argmax(axis=1), reference.predict(x_test))
    np.testing.assert_array_equal(targets, task.labels[fold.test])
    assert result.metrics["knn/k"] == 5 and result.extra["features/cache_hits"] == 0
    assert {"test/mcc", "test/auc", "val/mcc"} <= set(result.metrics)

    capped = _run(task, "knn", tmp_path, knn_k=10_000)  # every training row votes; the svm features are reused
    assert capped.metrics["knn/k"] == len(fold.train) and capped.extra["features/cache_hits"] == 1


def test_a_multilabel_knn_cell_scores_every_label(tmp_path):
    result = _run(bands_task(60), "knn", tmp_path, knn_k=5)
    probs, targets = (t.numpy() for t in result.module.test_predictions())
    assert probs.shape == targets.shape and ((probs >= 0) & (probs <= 1)).all()
    assert all(np.isfinite(v) for v in result.metrics.values())
    assert result.metrics["test/f1"] > 0.5  # three bright bands are easy neighbours even for scratch features


# --- few-shot ----------------------------------------------------------------------------------------------

def test_support_sets_draw_shots_per_class_from_the_given_rows_reproducibly():
    labels = np.repeat(np.arange(3), 20)
    train = np.arange(0, 60, 2)  # 10 rows of each class
    draws = support_sets(labels, train, 3, shots=4, episodes=6, seed=7)
    assert len(draws) == 6
    for support in draws:
        assert set(support) <= set(train) and len(set(support)) == len(support)
        assert np.bincount(labels[support], minlength=3).tolist() == [4, 4, 4]
    assert len({tuple(sorted(s)) for s in draws}) > 1  # episodes differ
    again = support_sets(labels, train, 3, shots=4, episodes=3, seed=7)
    assert all(np.array_equal(a, b) for a, b in zip(again, draws))  # an episode's draw does not depend on the count
    assert not np.array_equal(support_sets(labels, train, 3, shots=4, episodes=1, seed=8)[0], draws[0])
    short = support_sets(labels, np.array([0, 1, 20, 40, 41, 42]), 3, shots=2, episodes=1, seed=0)[0]
    assert np.bincount(labels[short], minlength=3).tolist() == [2, 1, 2]  # class 1 has one training row


def test_episode_summary_is_the_mean_with_a_t_interval():
    summary = episode_summary([{"test/mcc": v, "val/mcc": 2 * v} for v in (0.1, 0.2, 0.6)])
    assert summary["test/mcc"] == pytest.approx(0.3) and summary["val/mcc"] == pytest.approx(0.6)
    std = math.sqrt(((0.2) ** 2 + 0.1 ** 2 + 0.3 ** 2) / 2)
    assert summary["test/mcc_episode_std"] == pytest.approx(std)
    half = 4.302652729911275 * std / math.sqrt(3)  # Student t, 2 degrees of freedom, 97.5th percentile
    assert summary["test/mcc_episode_ci_low"] == pytest.approx(0.3 - half)
    assert summary["test/mcc_episode_ci_high"] == pytest.approx(0.3 + half)
    assert "val/mcc_episode_std" not in summary


def test_fewshot_episodes_never_draw_a_test_row_and_report_the_episode_mean(task, tmp_path, monkeypatch):
    drawn = []

    def recording(*args, **kwargs):
        drawn.extend(support_sets(*args, **kwargs))
        return drawn[-kwargs["episodes"]:]

    monkeypatch.setattr(fewshot_module, "support_sets", recording)
    result = _run(task, "fewshot", tmp_path, shots=3, episodes=6, seed=4)
    fold = result.datamodule.fold
    assert len(drawn) == 6
    for support in drawn:
        assert not set(support) & (set(fold.test) | set(fold.val)) and set(support) <= set(fold.train)
        assert np.bincount(task.labels[support], minlength=task.meta.num_classes).tolist() == [3] * task.meta.num_classes

    # Each episode scored independently: nearest L2-normalised class mean, MCC by scikit-learn.
    x_test = _encoded(task, result, tmp_path, fold.test)
    mccs = []
    for support in drawn:
        x, y = _encoded(task, result, tmp_path, support), task.labels[support]
        centroids = np.stack([x[y == c].mean(axis=0) for c in range(task.meta.num_classes)])
        centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
        mccs.append(matthews_corrcoef(task.labels[fold.test], (x_test @ centroids.T).argmax(axis=1)))
    assert result.metrics["test/mcc"] == pytest.approx(np.mean(mccs), abs=1e-5)
    assert result.metrics["test/mcc_episode_std"] == pytest.approx(np.std(mccs, ddof=1), abs=1e-5)
    assert result.metrics["test/mcc_episode_ci_low"] <= result.metrics["test/mcc"] <= result.metrics["test/mcc_episode_ci_high"]
    # The kept model (predictions table, confusion matrix) is the episode with the (lower) median MCC.
    probs, _ = result.module.test_predictions()
    kept = matthews_corrcoef(task.labels[fold.test], probs.numpy().argmax(axis=1))
    assert kept == pytest.approx(sorted(mccs)[(len(mccs) - 1) // 2], abs=1e-6)
    assert result.metrics["fewshot/episode"] == pytest.approx(np.argsort(mccs, kind="stable")[2])

    drawn.clear()
    again = _run(task, "fewshot", tmp_path, shots=3, episodes=6, seed=4)
    assert {k: v for k, v in again.metrics.items() if k.startswith("test/")} == \
        {k: v for k, v in result.metrics.items() if k.startswith("test/")}
    drawn.clear()
    other = _run(task, "fewshot", tmp_path, shots=3, episodes=6, seed=5)
    assert other.metrics["test/mcc_episode_std"] != result.metrics["test/mcc_episode_std"]


def test_fewshot_refuses_a_multilabel_task_before_any_extraction(tmp_path):
    cache = tmp_path / "cache"
    with pytest.raises(StrategyNotApplicable, match="multi-label") as error:
        _run(bands_task(30), "fewshot", cache)
    assert "knn" in str(error.value) and "svm" in str(error.value)
    assert not cache.exists()


def test_fewshot_warns_when_a_class_has_fewer_training_rows_than_shots(task, tmp_path):
    with pytest.warns(UserWarning, match="fewer than shots=50"):
        result = _run(task, "fewshot", tmp_path, shots=50, episodes=2)
    assert result.metrics["fewshot/short_classes"] == task.meta.num_classes


# --- a suite --------------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_a_suite_of_knn_and_fewshot_logs_test_metrics_and_episode_spread(tmp_path, mlflow_uri):
    from mlflow.tracking import MlflowClient

    from benchmark.run.runner import run_suite
    from tests.benchmark.suites import write_suite

    path = write_suite(tmp_path, name="probes", strategies=["svm", "knn", "fewshot"], sources={"none": {"weights": "scratch"}},
                       hparams={"knn_k": 5, "shots": 2, "episodes": 4})
    outcome = run_suite(path, echo=lambda *_: None)
    assert outcome.exit_code == 0 and len(outcome.ran) == 6, outcome.failed
    client = MlflowClient(mlflow_uri)
    runs = client.search_runs([client.get_experiment_by_name("medtl-probes").experiment_id], "tags.`medtl.stage` = 'finetune'")
    assert {r.data.params["strategy"] for r in runs} == {"svm", "knn", "fewshot"}
    for run in runs:
        metrics, strategy = run.data.metrics, run.data.params["strategy"]
        assert run.info.status == "FINISHED" and -1 <= metrics["test/mcc"] <= 1 and metrics["test/fps"] > 0
        assert {"test/confusion_matrix.csv", "test/predictions.csv"} <= {a.path for a in client.list_artifacts(run.info.run_id, "test")}
        if strategy == "knn":
            assert metrics["knn/k"] == 5 and run.data.params["hparams.knn_k"] == "5"
        if strategy == "fewshot":
            assert metrics["test/mcc_episode_ci_low"] <= metrics["test/mcc"] <= metrics["test/mcc_episode_ci_high"]
            assert "test/auc_episode_std" in metrics and run.data.params["hparams.shots"] == "2"
    # One pooled-feature entry (keyed by content, not fold) serves both folds of all three strategies.
    assert len(list((tmp_path / ".medtl_cache" / "features").glob("*.npy"))) == 1
    assert set(outcome.leaderboard["strategy"]) == {"svm", "knn", "fewshot"}

"""Macro, micro (Medico 2018) and positive-class scores: against scikit-learn and a worked example by hand."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    matthews_corrcoef,
    multilabel_confusion_matrix,
    precision_recall_fscore_support,
    precision_score,
    recall_score,
    roc_auc_score,
)

from benchmark.score_cli import main as score_main
from tasks.data.index import TaskMeta
from tasks.training.evaluation import predictions_table
from tasks.training.metrics import classification_metrics, score
from tasks.training.scoring import ScoringError, score_table

NAMES = ("polyps", "ulcer", "normal-z", "esophagitis", "dyed")
OLD_KEYS = {"mcc", "f1", "rec", "prec", "spec", "acc", "acc_micro", "auc"}
MICRO_KEYS = {f"micro/{k}" for k in ("mcc", "f1", "rec", "prec", "spec", "acc")}


def _sklearn_macro(y, p):
    labels = sorted(set(y) | set(p))
    mcm = multilabel_confusion_matrix(y, p, labels=labels)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {
            "mcc": matthews_corrcoef(y, p),  # the multiclass R_K
            "f1": f1_score(y, p, average="macro", zero_division=0),
            "rec": recall_score(y, p, average="macro", zero_division=0),
            "prec": precision_score(y, p, average="macro", zero_division=0),
            "spec": np.mean([tn / (tn + fp) for (tn, fp), _ in mcm]),
            "acc": np.mean([(tn + tp) / (tn + fp + fn + tp) for (tn, fp), (fn, tp) in mcm]),
        }


def _pooled_micro(y, p):
    """Micro one-vs-rest from scikit-learn's per-class 2x2 tables, pooled (an independent path)."""
    (tn, fp), (fn, tp) = multilabel_confusion_matrix(y, p, labels=sorted(set(y) | set(p))).sum(axis=0)
    return {"mcc": (tp * tn - fp * fn) / np.sqrt(float((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))),
            "f1": 2 * tp / (2 * tp + fp + fn), "rec": tp / (tp + fn), "prec": tp / (tp + fp),
            "spec": tn / (tn + fp), "acc": (tp + tn) / (tp + tn + fp + fn)}


CASES = {
    "random": lambda rng: (rng.integers(0, 5, 300), rng.integers(0, 5, 300)),
    "mostly_right": lambda rng: (lambda y: (y, np.where(rng.random(300) < 0.75, y, rng.integers(0, 5, 300))))(
        rng.integers(0, 5, 300)),
    "class_never_predicted": lambda rng: (rng.integers(0, 5, 300), rng.integers(0, 4, 300)),
    "class_absent_everywhere": lambda rng: (rng.integers(0, 4, 300), rng.integers(0, 4, 300)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_macro_rows_equal_scikit_learn_and_micro_rows_pool_its_counts(case):
    y, p = CASES[case](np.random.default_rng(11))
    names = pd.DataFrame({"target": [NAMES[i] for i in y], "predicted": [NAMES[i] for i in p]})
    for table, classes in ((names, NAMES), (pd.DataFrame({"target": y, "predicted": p}), None)):
        scores = score_table(table, class_names=classes)
        for name, value in _sklearn_macro(y, p).items():
            assert scores["macro"][name] == pytest.approx(value, abs=1e-5), name
        for name, value in _pooled_micro(y, p).items():
            assert scores["micro"][name] == pytest.approx(value, abs=1e-5), name
        # single-label: every error is one FP and one FN, so micro F1 = REC = PREC = accuracy
        assert scores["micro"]["f1"] == scores["micro"]["rec"] == scores["micro"]["prec"]
        assert scores["micro"]["f1"] == pytest.approx(accuracy_score(y, p), abs=1e-5)


# A worked example, 4 classes, N = 150 (rows true, columns predicted):
#
#             pred A   B   C   D   | support
#   true A        50   3   2   0   |   55
#   true B         4  30   5   1   |   40
#   true C         1   6  20   3   |   30
#   true D         0   2   4  19   |   25
#
# One-vs-rest counts per class (TN = N - TP - FP - FN):
#   A: TP 50  FP 4+1+0 = 5   FN 3+2+0 = 5    TN 150-50-5-5   = 90
#   B: TP 30  FP 3+6+2 = 11  FN 4+5+1 = 10   TN 150-30-11-10 = 99
#   C: TP 20  FP 2+5+4 = 11  FN 1+6+3 = 10   TN 150-20-11-10 = 109
#   D: TP 19  FP 0+1+3 = 4   FN 0+2+4 = 6    TN 150-19-4-6   = 121
# Pooled (micro): TP 119, FP 31, FN 31, TN 419   (sum 600 = 4 x 150)
#   REC = PREC = F1 = 119 / 150                           = 0.7933 -> 0.793
#   SPEC = 419 / (419 + 31) = 419 / 450                   = 0.9311 -> 0.931
#   ACC = (119 + 419) / 600 = 538 / 600                   = 0.8967 -> 0.897
#   MCC = (119*419 - 31*31) / sqrt(150*150*450*450)
#       = (49861 - 961) / (150 * 450) = 48900 / 67500     = 0.7244 -> 0.724
# Positive class B: REC = 30/40 = 0.750, PREC = 30/41 = 0.732, F1 = 60/81 = 0.741.
WORKED = np.array([[50, 3, 2, 0], [4, 30, 5, 1], [1, 6, 20, 3], [0, 2, 4, 19]])
WORKED_MICRO = {"mcc": 0.724, "f1": 0.793, "rec": 0.793, "prec": 0.793, "spec": 0.931, "acc": 0.897}
WORKED_POSITIVE_B = {"rec": 0.750, "prec": 0.732, "f1": 0.741}


def _table_from(matrix, names):
    target = [names[i] for i in range(len(names)) for j in range(len(names)) for _ in range(matrix[i, j])]
    predicted = [names[j] for i in range(len(names)) for j in range(len(names)) for _ in range(matrix[i, j])]
    return pd.DataFrame({"target": target, "predicted": predicted})


def test_worked_example_micro_row_by_hand():
    scores = score_table(_table_from(WORKED, "ABCD"), positive_class="B")
    assert {k: round(v, 3) for k, v in scores["micro"].items()} == WORKED_MICRO
    assert {k: round(v, 3) for k, v in scores["positive"].items()} == WORKED_POSITIVE_B


def test_worked_example_through_medtl_score_json(tmp_path, capsys):
    path = tmp_path / "predictions.csv"
    _table_from(WORKED, "ABCD").to_csv(path, index=False)
    assert score_main([str(path), "--json", "--positive-class", "B"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert set(printed) == {"macro", "micro", "positive"}
    assert set(printed["macro"]) == set(printed["micro"]) == set(WORKED_MICRO)  # no probabilities: no auc
    assert {k: round(v, 3) for k, v in printed["micro"].items()} == WORKED_MICRO
    assert {k: round(v, 3) for k, v in printed["positive"].items()} == WORKED_POSITIVE_B
    assert score_main([str(path)]) == 0  # the plain-text table
    text = capsys.readouterr().out
    assert "micro (Medico 2018)" in text and "0.724" in text and max(map(len, text.splitlines())) <= 100
    assert score_main([str(path), "--json"]) == 0
    assert set(json.loads(capsys.readouterr().out)) == {"macro", "micro"}


@pytest.mark.parametrize("positive", [0, 1, 3])
def test_positive_class_equals_scikit_learn(positive):
    rng = np.random.default_rng(positive)
    y = rng.integers(0, 4, 200)
    p = np.where(rng.random(200) < 0.6, y, rng.integers(0, 4, 200))
    prec, rec, f1, _ = precision_recall_fscore_support(y, p, labels=[positive], zero_division=0)
    names = ("normal", "bacterial", "viral", "covid")
    for chosen in (positive, names[positive]):
        scores = score_table(pd.DataFrame({"target": y, "predicted": p}), class_names=names, positive_class=chosen)
        assert scores["positive"] == pytest.approx({"rec": rec[0], "prec": prec[0], "f1": f1[0]}, abs=1e-5)
    # The cells' collection logs the same values under pos/*.
    probs = torch.tensor(np.eye(4)[p], dtype=torch.float32)
    meta = TaskMeta("chest", names, "multiclass")
    metrics, _ = score(probs, torch.tensor(y), meta, positive_class=names[positive])
    assert metrics["test/pos/rec"] == pytest.approx(rec[0], abs=1e-5)
    assert metrics["test/pos/prec"] == pytest.approx(prec[0], abs=1e-5)
    assert metrics["test/pos/f1"] == pytest.approx(f1[0], abs=1e-5)


def test_binary_positive_class_with_degenerate_predictions_scores_zero():
    # Nothing predicted positive: precision and F1 are 0 (zero_division=0), as scikit-learn reports.
    y, p = np.array([0, 1, 1, 0, 1]), np.zeros(5, dtype=int)
    scores = score_table(pd.DataFrame({"target": y, "predicted": p}), class_names=("NORMAL", "PNEUMONIA"),
                         positive_class="PNEUMONIA")
    assert scores["positive"] == {"rec": 0.0, "prec": 0.0, "f1": 0.0}


def test_cells_keep_their_keys_and_gain_micro_rows():
    meta = TaskMeta("t", NAMES, "multiclass")
    assert set(classification_metrics(meta).keys()) == OLD_KEYS | MICRO_KEYS
    positive = set(classification_metrics(meta, positive_class="ulcer").keys())
    assert positive == OLD_KEYS | MICRO_KEYS | {"pos/rec", "pos/prec", "pos/f1"}
    multilabel = TaskMeta("m", NAMES, "multilabel")
    assert not any("/" in k for k in classification_metrics(multilabel).keys())
    with pytest.raises(ValueError, match="multi-label"):
        classification_metrics(multilabel, positive_class="ulcer")
    with pytest.raises(ValueError, match="polyps, ulcer"):
        classification_metrics(meta, positive_class="pneumonia")


def test_a_cells_predictions_table_scores_as_the_cell_did():
    rng = np.random.default_rng(4)
    y = rng.integers(0, 3, 240)
    logits = rng.normal(size=(240, 3)) + np.eye(3)[y] * 1.2
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    names = ("benign", "malignant", "normal")
    table = predictions_table(range(240), probs, y, names, multilabel=False)
    metrics, _ = score(torch.tensor(probs), torch.tensor(y), TaskMeta("breast", names, "multiclass"))
    scores = score_table(table)
    for name in ("mcc", "f1", "rec", "prec", "spec", "acc", "auc"):
        assert scores["macro"][name] == pytest.approx(metrics[f"test/{name}"], abs=1e-5), name
    for name in ("mcc", "f1", "rec", "prec", "spec", "acc"):
        assert scores["micro"][name] == pytest.approx(metrics[f"test/micro/{name}"], abs=1e-5), name
    assert scores["macro"]["auc"] == pytest.approx(roc_auc_score(y, probs, multi_class="ovr"), abs=1e-4)
    assert scores["micro"]["auc"] == pytest.approx(roc_auc_score(np.eye(3)[y], probs, average="micro"), abs=1e-4)


BAD_TABLES = {
    "missing column": (pd.DataFrame({"truth": [0, 1], "predicted": [0, 1]}), "lacks column"),
    "empty": (pd.DataFrame({"target": [], "predicted": []}), "no rows"),
    "NaN target": (pd.DataFrame({"target": [0.0, np.nan, 1.0], "predicted": [0, 1, 1]}), "data row 2"),
    "unknown name": (pd.DataFrame({"target": ["A", "B"], "predicted": ["A", "Z"]}), "'Z'"),
    "mixed in a column": (pd.DataFrame({"target": ["A", "B", "A"], "predicted": ["A", 1, "B"]}), "mixes class names"),
    "names and ids": (pd.DataFrame({"target": ["A", "B"], "predicted": [0, 1]}), "names in both"),
    "id outside": (pd.DataFrame({"target": [0, 1], "predicted": [0, 2], "p:a": [1, 0], "p:b": [0, 1]}), "outside 0..1"),
    "NaN probability": (pd.DataFrame({"target": [0, 1], "predicted": [0, 1], "p:a": [1, np.nan], "p:b": [0, 1]}),
                        "NaN"),
    "multi-label": (pd.DataFrame({"targets": [[0, 1]], "predicted": [[0]]}), "multi-label"),
}


@pytest.mark.parametrize("case", sorted(BAD_TABLES))
def test_tables_that_cannot_be_scored_say_why(case):
    table, message = BAD_TABLES[case]
    with pytest.raises(ScoringError, match="Fix"):
        score_table(table, class_names=["A", "B"] if case == "unknown name" else None)
    with pytest.raises(ScoringError, match=message):
        score_table(table, class_names=["A", "B"] if case == "unknown name" else None)


def test_medtl_score_errors_exit_2_with_one_line(tmp_path, capsys):
    assert score_main([str(tmp_path / "absent.csv")]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    path = tmp_path / "bad.csv"
    path.write_text("target,predicted\nA,B\nB,\n")
    assert score_main([str(path), "--json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "data row 2" in captured.err and "Traceback" not in captured.err
    assert len(captured.err.strip().splitlines()) == 1
    path.write_text("target,predicted\nA,B\nB,B\n")
    assert score_main([str(path), "--positive-class", "C"]) == 2
    assert "not one of the classes" in capsys.readouterr().err


def test_classifier_module_logs_the_positive_class_row():
    from backbones import create_backbone
    from tasks.training import ClassifierModule

    meta = TaskMeta("chest", ("NORMAL", "PNEUMONIA"), "binary")
    module = ClassifierModule(create_backbone("smallcnn", "scratch"), meta, positive_class="PNEUMONIA")
    expected = {f"{split}/{k}" for split in ("val", "test")
                for k in OLD_KEYS | MICRO_KEYS | {"pos/rec", "pos/prec", "pos/f1"}}
    assert set(module.val_metrics.keys()) | set(module.test_metrics.keys()) == expected
    plain = ClassifierModule(create_backbone("smallcnn", "scratch"), meta)
    assert not any("pos/" in k for k in plain.test_metrics.keys())


def test_a_trained_cell_logs_micro_rows_that_medtl_score_reproduces():
    from backbones import create_backbone
    from tasks.data import load_task
    from tasks.training import Machine, TrainPlan, get_strategy, train_and_test

    task = load_task("gen-target", None, scale=0.5, size=32)
    torch.manual_seed(0)
    hp = get_strategy("full").resolve({"epochs": 1, "batch_size": 16})
    result = train_and_test(task, create_backbone("smallcnn", "scratch"), TrainPlan(fold=0, k=3, seed=0, hp=hp, size=32), Machine(accelerator="cpu"))
    probs, targets = (t.numpy() for t in result.module.test_predictions())
    table = predictions_table(range(len(targets)), probs, targets, task.meta.class_names, multilabel=False)
    scores = score_table(table)
    for name in ("mcc", "f1", "rec", "prec", "spec", "acc"):
        assert result.metrics[f"test/micro/{name}"] == pytest.approx(scores["micro"][name], abs=1e-5), name
        assert result.metrics[f"test/{name}"] == pytest.approx(scores["macro"][name], abs=1e-5), name
    # predictions.csv keeps 6 decimals: an untrained model's nearly equal scores tie there, so AUC moves a little.
    assert result.metrics["test/auc"] == pytest.approx(scores["macro"]["auc"], abs=0.01)

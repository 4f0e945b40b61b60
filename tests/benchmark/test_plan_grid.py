"""A `grid` of hyperparameter values expands into one row per combination; `--dry-run` prints the cells.

    PYTHONPATH=. .venv/bin/python -m pytest tests/benchmark/test_plan_grid.py -q
"""

from __future__ import annotations

import os

import pytest

from benchmark.cli import main
from benchmark.plan.suite import SuiteError, load_suite
from tests.benchmark.suites import write_suite

SCRATCH = {"scratch": {"weights": "scratch"}}


def _suite(tmp_path, **more):
    return load_suite(write_suite(tmp_path, sources=SCRATCH, **more))


def test_a_grid_gives_one_row_per_value_with_distinct_hashes(tmp_path):
    suite = _suite(tmp_path, strategies=["full", "svm"], grid={"lr": [0.01, 0.1]})
    full = [c for c in suite.cells if c.strategy == "full"]
    svm = [c for c in suite.cells if c.strategy == "svm"]
    assert len(full) == 2 * 2 and len(svm) == 2  # 2 values x 2 folds; svm reads no lr: its cells stay single
    assert {c.row_strategy for c in full} == {"full[lr=0.01]", "full[lr=0.1]"} and {c.row_strategy for c in svm} == {"svm"}
    assert {c.hp["lr"] for c in full} == {0.01, 0.1}
    assert len({c.hash for c in suite.cells}) == len(suite.cells)
    # The variant is a label: a grid value hashes as the same value given in `hparams`.
    fixed = _suite(tmp_path, strategies=["full", "svm"], hparams={"epochs": 5, "batch_size": 32, "lr": 0.1})
    assert {c.hash for c in full if c.hp["lr"] == 0.1} == {c.hash for c in fixed.cells if c.strategy == "full"}
    # Without the grid the other rows keep their hashes.
    assert {c.hash for c in svm} == {c.hash for c in fixed.cells if c.strategy == "svm"}


def test_a_grid_of_two_names_is_their_product_and_labels_keep_the_rows_apart(tmp_path):
    suite = _suite(tmp_path, strategies=["vlad"], hparams={"epochs": 5}, grid={"scales": ["32", "32,48"], "vlad_k": [2, 4]})
    rows: dict = {}
    for cell in suite.cells:
        rows.setdefault(cell.row_strategy, cell)
    assert set(rows) == {"vlad[scales=32;vlad_k=2]", "vlad[scales=32;vlad_k=4]", "vlad[scales=32,48;vlad_k=2]",
                         "vlad[scales=32,48;vlad_k=4]"}
    assert len(suite.cells) == 4 * 2 and len({c.hash for c in suite.cells}) == 8
    assert rows["vlad[scales=32,48;vlad_k=4]"].hp["vlad_k"] == 4 and rows["vlad[scales=32,48;vlad_k=4]"].hp["scales"] == "32,48"
    assert "vlad[scales=32;vlad_k=2] fold0" in rows["vlad[scales=32;vlad_k=2]"].label


def test_an_ensemble_never_mixes_grid_values(tmp_path):
    suite = _suite(tmp_path, strategies=["full", "ensemble-backbones"], backbones=["smallcnn", "designed_cnn3"],
                   grid={"lr": [0.01, 0.1]})
    ensembles = [c for c in suite.cells if c.strategy == "ensemble-backbones"]
    assert len(ensembles) == 2 * 2  # one per grid value and fold
    by_hash = {c.hash: c for c in suite.cells}
    for ensemble in ensembles:
        assert {by_hash[m].variant for m in ensemble.members} == {ensemble.variant}


@pytest.mark.parametrize("grid, hparams, fragments", [
    ({"learning_rate": [0.1]}, None, ["grid.learning_rate: unknown hyperparameter(s) 'learning_rate'", "read"]),
    ({"lr": [0.1, "fast"]}, None, ["grid.lr[1]: hyperparameter 'lr' must be float", "Fix: set it to"]),
    ({"dropout": [0.1, 1.5]}, {"epochs": 1}, ["grid.dropout[1]", "between 0.0 and 0.9", "Fix:"]),
    ({"lr": [0.1, 0.1]}, None, ["grid.lr", "given more than once", "Fix:"]),
    ({"lr": []}, None, ["grid.lr", "at least 1", "Fix:"]),
    ({"lr": [0.1]}, {"epochs": 1, "lr": 0.01}, ["grid: 'lr' also given in 'hparams'", "Fix:"]),
    ({"vlad_k": [1]}, None, ["grid.vlad_k[0]", ">= 2"]),
])
def test_bad_grids_name_the_key_and_the_fix(tmp_path, grid, hparams, fragments):
    more = {"hparams": hparams} if hparams else {}
    with pytest.raises(SuiteError) as error:
        _suite(tmp_path, strategies=["full", "vlad"], grid=grid, **more)
    message = str(error.value)
    assert all(f in message for f in fragments), message


def test_dry_run_prints_the_cells_and_creates_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = write_suite(tmp_path, sources=SCRATCH, fractions=[657, 1.0], grid={"lr": [0.01, 0.1]})
    suite = load_suite(path)
    assert main(["benchmark", str(path), "--dry-run"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert f"{len(suite.cells)} cells (0 pretraining, 8 fine-tuning)" in out[0]
    assert out[1].split() == ["stage", "source", "backbone", "strategy", "fold", "seed", "fraction", "hash"]
    rows = [line.split() for line in out[2:]]
    assert [r[-1] for r in rows] == [c.hash for c in suite.cells]
    assert ["finetune", "scratch", "smallcnn", "full[lr=0.01]", "0", "0", "n657"] == rows[0][:-1]
    assert sorted(os.listdir(tmp_path)) == ["tiny.yaml"]  # no store, no report, no cache


def test_dry_run_of_an_invalid_suite_exits_2_with_the_message(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = write_suite(tmp_path, sources=SCRATCH, fractions=[1.5])
    assert main(["benchmark", str(path), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "fractions[0]" in err and "Fix:" in err
    assert sorted(os.listdir(tmp_path)) == ["tiny.yaml"]

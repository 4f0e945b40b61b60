"""Leakage in the answer: planted near-duplicates are found in a suite's folds and the report re-scores without them;
a `repeats: {until: decided}` suite runs its rounds end to end.

    python -m pytest tests/benchmark/test_leakage.py -q                 # unit tests
    python -m pytest tests/benchmark/test_leakage.py -q -m slow         # the suites (tiny, CPU)
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient

from benchmark.report.leakage import ALL_SEEDS, TARGET, flagged_items, flagged_per_seed, fold_duplicates
from tasks.data import load_task
from tasks.data.images import ArrayStore
from tasks.data.index import Task
from tasks.data.splits import assign_folds


def _with_copy(task: Task, source_row: int, copy_row: int) -> Task:
    images = task.images.array.copy()
    images[copy_row] = images[source_row]
    return Task(task.meta, task.index, ArrayStore(images, origin="planted duplicate"))


def test_a_planted_duplicate_in_a_generated_target_is_found_and_flagged():
    task = load_task("gen-target", None, size=16)
    folds = assign_folds(task, 3, 0)
    a = 5
    b = int(np.flatnonzero(folds != folds[a])[0])  # a row of another fold: a test image with a copy in training
    planted = _with_copy(task, a, b)
    assert fold_duplicates(task, 3, [0]).empty  # the generated images are all distinct: nothing but the plant
    pairs = fold_duplicates(planted, 3, [0, 1])
    found = pairs[(pairs["scope"] == TARGET) & (pairs["seed"] == 0)]
    assert len(found) == 1 and bool(found["exact"].iloc[0]) and found["distance"].iloc[0] == 0
    assert {found["item_a"].iloc[0], found["item_b"].iloc[0]} == {str(a), str(b)}
    # Both images are flagged, each in the cell that tests it; a fold holding neither flags nothing.
    assert str(a) in flagged_items(pairs, int(folds[a]), 0) and str(b) in flagged_items(pairs, int(folds[b]), 0)
    other = ({0, 1, 2} - {int(folds[a]), int(folds[b])}).pop()
    assert not flagged_items(pairs, other, 0)
    assert flagged_per_seed(pairs)[0] == 2
    # Seed 1 draws other folds: the pair is listed for it only if the two rows fall in different folds there.
    folds1 = assign_folds(task, 3, 1)
    assert ((pairs["seed"] == 1).sum() == 1) == bool(folds1[a] != folds1[b])


def test_a_source_image_copied_into_the_target_is_flagged_for_that_sources_rows_only():
    task = load_task("gen-target", None, size=16)
    source = load_task("gen-medical", None, size=16, per_class=10)
    images = task.images.array.copy()
    images[7] = source.images.array[3]
    planted = Task(task.meta, task.index, ArrayStore(images, origin="planted source copy"))
    pairs = fold_duplicates(planted, 3, [0], sources={"gen-medical": source})
    cross = pairs[pairs["scope"] == "source:gen-medical"]
    assert len(cross) == 1 and cross["item_b"].iloc[0] == "7" and cross["seed"].iloc[0] == ALL_SEEDS
    fold = int(assign_folds(task, 3, 0)[7])
    assert "7" in flagged_items(pairs, fold, 0, source="gen-medical")
    assert "7" not in flagged_items(pairs, fold, 0, source="none")


def _suite(folder, name: str, **overrides) -> str:
    suite = {"name": name, "target": {"dataset": "gen-target", "options": {"size": 16}}, "folds": 3, "image_size": 16,
             "backbones": ["smallcnn"], "strategies": ["full"], "sources": {"none": {"weights": "scratch"}},
             "hparams": {"epochs": 1, "batch_size": 32}, "throughput": {"batch_size": 8, "warmup": 1, "batches": 1}}
    suite.update(overrides)
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(suite))
    return str(path)


def test_repeats_schema_refuses_an_official_split_and_a_max_below_the_seeds(tmp_path):
    from benchmark.plan.suite import SuiteError, load_suite

    with pytest.raises(SuiteError, match="repeats need k-fold"):
        load_suite(_suite(tmp_path, "a", folds="official", repeats={"until": "decided", "max_seeds": 3}))
    with pytest.raises(SuiteError, match="leaves no round"):
        load_suite(_suite(tmp_path, "b", seeds=[0, 1], repeats={"until": "decided", "max_seeds": 2}))
    with pytest.raises(SuiteError, match="until"):
        load_suite(_suite(tmp_path, "c", repeats={"until": "always", "max_seeds": 3}))


def test_seed_rounds_add_one_new_seed_per_round_and_keep_existing_identities(tmp_path):
    from benchmark.plan.repeats import seed_rounds, with_seeds
    from benchmark.plan.suite import load_suite

    suite = load_suite(_suite(tmp_path, "r", seeds=[4], repeats={"until": "decided", "max_seeds": 3}))
    assert seed_rounds(suite) == [(4,), (4, 5), (4, 5, 6)]
    wider = with_seeds(suite, (4, 5))
    assert seed_rounds(wider) == seed_rounds(suite)  # a widened suite plans the same rounds
    assert {c.hash for c in suite.cells} < {c.hash for c in wider.cells}
    assert len(wider.finetune_cells) == 2 * len(suite.finetune_cells)
    plain = load_suite(_suite(tmp_path, "p", seeds=[4]))  # `repeats` is not part of any cell's identity
    assert [c.hash for c in plain.cells] == [c.hash for c in load_suite(_suite(tmp_path, "p", seeds=[4],
                                                                                repeats={"until": "decided", "max_seeds": 3})).cells]


@pytest.mark.slow
def test_a_repeats_suite_runs_its_rounds_audits_its_folds_and_reports_both(tmp_path, mlflow_uri):
    from benchmark.run.runner import run_suite
    from tracking.naming import AUDIT_TAG, REPEATS_LOOKS_TAG

    # Two rows (two strategies on one backbone) x 2 folds, 1 epoch at 16 px: up to 3 seeds in rounds.
    path = _suite(tmp_path, "repeats-tiny", folds=2, strategies=["full", "linear"], repeats={"until": "decided", "max_seeds": 3})
    outcome = run_suite(path, uri=mlflow_uri, accelerator="cpu", report_dir=tmp_path / "report", echo=lambda *_: None)
    assert not outcome.failed
    client = MlflowClient(mlflow_uri)
    parent = client.get_run(outcome.parent_run_id)
    looks = int(parent.data.tags[REPEATS_LOOKS_TAG])
    assert 1 <= looks <= 3
    seeds_run = sorted({s.seed for s in outcome.ran})
    decided = parent.data.tags["medtl.repeats.decided"] == "true"
    assert seeds_run == list(range(looks)) and (decided or looks == 3)
    history = client.get_metric_history(outcome.parent_run_id, "repeats/boundary")
    assert sorted(m.step for m in history) == list(range(1, looks + 1))
    assert AUDIT_TAG in parent.data.tags
    assert "near_duplicates.csv" in [f.path.rsplit("/", 1)[-1] for f in client.list_artifacts(outcome.parent_run_id, "audit")]
    report = (tmp_path / "report" / "report.md").read_text()
    assert "Repeats until decided (group-sequential design)" in report and f"{3} planned looks" in report
    assert "Power: what this suite could detect" in report and "Leakage: near-duplicates of test images" in report
    power = pd.read_csv(tmp_path / "report" / "power.csv")
    t_rows = power[power["test"] == "corrected t-test"]
    assert len(t_rows) == 1 and t_rows["n"].iloc[0] == 2 * looks and (t_rows["mde"] >= 0).all()
    leakage = pd.read_csv(tmp_path / "report" / "leakage.csv")
    assert set(leakage["flagged"]) == {0}  # generated images are distinct: re-scoring changes nothing
    np.testing.assert_allclose(leakage["mcc_dedup"], leakage["mcc"], atol=1e-5)
    # A rerun replays the same looks from the store and runs nothing.
    again = run_suite(path, uri=mlflow_uri, accelerator="cpu", report_dir=tmp_path / "report2", echo=lambda *_: None)
    assert not again.ran and client.get_run(again.parent_run_id).data.tags[REPEATS_LOOKS_TAG] == str(looks)


@pytest.mark.slow
@pytest.mark.fixtures
def test_breastmnist_report_shows_its_folds_near_duplicates_and_the_deduplicated_rescore(tmp_path, mlflow_uri, shared_data):
    from benchmark.run.runner import run_suite

    npz = shared_data / "breastmnist" / "breastmnist.npz"
    if not npz.is_file():
        pytest.skip(f"BreastMNIST fixture not found at {npz}")
    path = _suite(tmp_path, "breast-leakage", target={"dataset": "medmnist", "path": "breastmnist/breastmnist.npz",
                                                     # its one pixel-identical train/test pair is what this test is about
                                                     "options": {"allow_duplicates": True}},
                  image_size=28, hparams={"epochs": 4, "batch_size": 64, "class_weighted": True})
    outcome = run_suite(path, data_root=shared_data, uri=mlflow_uri, accelerator="cpu", report_dir=tmp_path / "report",
                        echo=lambda *_: None)
    assert not outcome.failed
    report = (tmp_path / "report" / "report.md").read_text()
    section = report[report.index("Leakage: near-duplicates of test images"):]
    pairs = pd.read_csv(tmp_path / ".medtl_cache" / "audit" / next((tmp_path / ".medtl_cache" / "audit").iterdir()).name,
                        dtype={"item_a": str, "item_b": str})
    flagged = flagged_per_seed(pairs)[0]
    assert flagged > 10  # BreastMNIST's ~100 near-copies across its official splits land in different folds too
    assert f"seed 0: {flagged} of 780" in section
    leakage = pd.read_csv(tmp_path / "report" / "leakage.csv")
    row = leakage.iloc[0]
    assert row["flagged"] == flagged and row["test_images"] == 780
    assert np.isfinite(row["mcc_dedup"]) and np.isfinite(row["mcc"])
    print(f"\nBreastMNIST 3-fold seed 0: {flagged} of 780 test images flagged; MCC {row['mcc']:.4f} -> {row['mcc_dedup']:.4f} "
          f"de-duplicated; AUC {row['auc']:.4f} -> {row['auc_dedup']:.4f}")

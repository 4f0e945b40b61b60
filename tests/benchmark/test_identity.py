"""Cell identity: what changes a result changes the hash, nothing else does; old stores migrate.

    .venv/bin/python -m pytest tests/benchmark/test_identity.py -q
"""

from __future__ import annotations

import inspect
import json
from dataclasses import replace
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from benchmark.plan.spec import RunSpec
from benchmark.plan.suite import load_suite
from tasks.data import DATASETS
from tasks.training import STRATEGIES, HParam
from tasks.training.hparams import SHARED

REPO = Path(__file__).resolve().parents[2]
SMOKE = REPO / "benchmark" / "suites" / "smoke.yaml"

# Reference cells written out in full: their hashes may only change on purpose (then update
# the pins, bump benchmark.plan.spec.FORMAT and teach benchmark.run.migrate the old format).
REFERENCE = RunSpec.build(
    stage="finetune", task="gen-target", task_options={"scale": 1.0, "seed": 0, "size": 32}, data_path="", fold=1,
    folds=3, seed=0, backbone="smallcnn", weights="scratch", source="none", strategy="full",
    hparams={"augment": "light", "batch_size": 32, "class_weighted": True, "dropout": 0.0, "epochs": 5, "head_l1": 0.0,
             "head_l2": 0.0, "lr": 0.001, "optimizer": "adam", "weight_decay": 0.0},
    image_size=32,
)
PINNED = {
    "reference": (REFERENCE, "302de5615def2fc2"),
    "reference-layerwise": (replace(REFERENCE, strategy="layerwise", hparams=tuple(sorted(
        {**REFERENCE.hp, "unfreeze_every": 2, "unfreeze_lr_factor": 0.1}.items()))), "6a33d2508b629582"),
    "reference-pretrain": (replace(REFERENCE, stage="pretrain", task="gen-general", fold=0, folds=5,
                                   task_options=(("per_class", 80), ("seed", 0), ("size", 32))), "7d533bbf89a3fc81"),
}
# The smoke suite as shipped (defaults included): the first pretraining and fine-tuning cells.
SMOKE_PINNED = {0: "da7db057da39ca72", 4: "573a7ffecf6a8a7d"}  # the issue-7 defaults (step, select mcc, 15 epochs) made new cells


@pytest.mark.parametrize("name", sorted(PINNED))
def test_reference_hashes_are_pinned(name):
    spec, expected = PINNED[name]
    assert spec.hash == expected, f"{name}: identity changed; see the comment above PINNED"


def test_smoke_suite_hashes_are_pinned():
    cells = load_suite(SMOKE).cells
    assert {i: cells[i].hash for i in SMOKE_PINNED} == SMOKE_PINNED


def _hashes() -> list[str]:
    return [c.hash for c in load_suite(SMOKE).cells]


def _with_option(blur_default: float):
    """gen-target with one more option, as an upgrade would add it: neutral at 0.0 (no blur)."""
    entry = DATASETS.get("gen-target")
    original = entry.load

    def gen_target(root=None, *, size: int = 32, scale: float = 1.0, seed: int = 0, blur: float = blur_default):
        return original(root, size=size, scale=scale, seed=seed)

    card = replace(entry.card, neutral={**entry.card.neutral, "blur": 0.0})
    return DATASETS.swapped("gen-target", replace(entry, load=gen_target, card=card))


def test_neutral_additions_keep_every_hash_and_changed_defaults_change_them(monkeypatch):
    before = _hashes()
    # An upgrade adds a shared hyperparameter, a strategy's own one and a dataset option, each with
    # a neutral default that reproduces the old behaviour: no finished cell becomes unfinished.
    monkeypatch.setitem(SHARED, "label_smoothing", HParam(0.0, float, "label smoothing", low=0.0, neutral=0.0))
    monkeypatch.setitem(STRATEGIES.get("layerwise").params, "rewarm", HParam(False, bool, "rewarm", neutral=False))
    with _with_option(0.0):
        assert _hashes() == before
        assert "label_smoothing" in load_suite(SMOKE).cells[4].hp  # the cell does use it
    # Changing a default changes every cell that uses it.
    monkeypatch.setitem(SHARED, "label_smoothing", HParam(0.1, float, "label smoothing", low=0.0, neutral=0.0))
    changed = _hashes()
    assert all(a != b for a, b in zip(before, changed))
    monkeypatch.setitem(SHARED, "label_smoothing", HParam(0.0, float, "label smoothing", low=0.0, neutral=0.0))
    with _with_option(1.0):
        after = _hashes()
    pretrain = [c.stage == "pretrain" for c in load_suite(SMOKE).cells]
    # Only the target's cells read gen-target; pretraining cells (other datasets) keep theirs.
    assert all((a == b) == p for a, b, p in zip(before, after, pretrain))


def test_settings_options_are_not_identity():
    from tasks.data import dataset_card

    assert "cache_dir" in dataset_card("cataract101").settings
    spec = replace(REFERENCE, task="cataract101", task_options=(("cache_dir", "/a"), ("fps", 1.0)))
    assert spec.hash == replace(spec, task_options=(("cache_dir", "/b"), ("fps", 1.0))).hash
    assert spec.hash != replace(spec, task_options=(("cache_dir", "/a"), ("fps", 2.0))).hash


def test_a_strategy_is_called_with_exactly_its_hyperparameters():
    trained = {name: s for name, s in STRATEGIES.items() if s.trains}  # feature and combining strategies have no callbacks
    assert {"full", "linear", "layerwise"} <= set(trained)
    for name, strategy in trained.items():
        params = inspect.signature(strategy.callbacks).parameters
        assert set(params) == set(strategy.params), name
    full = load_suite(SMOKE).cells[4]
    assert "unfreeze_every" not in full.hp  # only layerwise reads it, so only its cells carry it


def test_a_format_1_store_migrates_and_a_rerun_skips_every_cell(tmp_path, mlflow_uri, capsys):
    """Runs recorded by medtl before the identity change (real format-1 specs of the smoke suite)."""
    from benchmark.cli import main
    from tracking.naming import suite_experiment
    from tracking import ensure_experiment, finished_runs_by_hash, log_json

    import yaml

    legacy = json.loads((Path(__file__).parent / "data" / "smoke_specs_v1.json").read_text())["smoke"]
    client = MlflowClient(mlflow_uri)
    # The protocol defaults changed after format 1 (select the best validation epoch, step decay):
    # by design that makes new cells, so "nothing reruns" holds for the smoke suite with the
    # protocol those cells used, pinned in the suite (as the README tells users to do).
    raw = yaml.safe_load(SMOKE.read_text())
    raw["hparams"].update({"select": "last", "schedule": "none"})
    pinned = tmp_path / "smoke.yaml"
    pinned.write_text(yaml.safe_dump(raw, sort_keys=False))  # keep the cell order
    suite = load_suite(pinned)
    assert not {c.hash for c in suite.cells} & {c.hash for c in load_suite(SMOKE).cells}
    experiment = ensure_experiment(client, suite_experiment(suite.name))
    for cell in legacy:
        run = client.create_run(experiment, tags={"medtl.spec_hash": cell["hash"], "medtl.stage": cell["spec"]["stage"]})
        log_json(client, run.info.run_id, cell["spec"], "spec.json")
        client.set_terminated(run.info.run_id, "FINISHED")
    assert not set(finished_runs_by_hash(client, experiment)) & {c.hash for c in suite.cells}
    assert main(["migrate", "--tracking-uri", mlflow_uri]) == 0
    assert "migrated 22 finished cell(s) to spec format 2" in capsys.readouterr().out
    finished = finished_runs_by_hash(client, experiment)
    assert {c.hash for c in suite.cells} <= set(finished)
    run = finished[suite.cells[-1].hash]
    assert run.data.tags["medtl.spec_hash_v1"] == legacy[-1]["hash"]
    # A second migration finds nothing left to do.
    assert main(["migrate", "--tracking-uri", mlflow_uri]) == 0
    assert "migrated 0 finished cell(s)" in capsys.readouterr().out


def test_allowing_a_releases_duplicates_is_recorded_but_not_identity(tmp_path):
    from tests.benchmark.suites import write_suite

    plain = load_suite(write_suite(tmp_path, name="dups"))
    allowed = load_suite(write_suite(tmp_path, name="dups", target={"dataset": "gen-target",
                                                                     "options": {"size": 32, "allow_duplicates": True}}))
    assert [c.hash for c in plain.cells] == [c.hash for c in allowed.cells]
    assert all(c.options.get("allow_duplicates") is True for c in allowed.finetune_cells)  # logged with the params

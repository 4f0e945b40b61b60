"""The strategies suite: every strategy of the papers as a leaderboard row, on generated data.

    .venv/bin/python -m pytest tests/benchmark/test_strategies_suite.py -q
"""

from __future__ import annotations

import re

from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from benchmark.cli import SUITES_DIR, main
from tracking.naming import suite_experiment
from benchmark.plan.suite import SuiteError, load_suite
from tests.benchmark.suites import write_suite


def _reduced(tmp_path: Path) -> Path:
    """strategies-smoke.yaml at CI size: one backbone, 1-2 epochs; every strategy and source kept."""
    raw = yaml.safe_load((SUITES_DIR / "strategies-smoke.yaml").read_text())
    raw["backbones"] = ["smallcnn"]
    raw["hparams"]["epochs"] = 1
    for source in raw["sources"].values():
        if "pretrain" in source:
            source["pretrain"]["hparams"]["epochs"] = 1
    path = tmp_path / "strategies-smoke.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


@pytest.mark.slow
def test_reduced_strategies_suite_gives_a_row_per_strategy_and_chains_double_transfer(tmp_path, mlflow_uri, capsys):
    path = _reduced(tmp_path)
    assert main(["benchmark", str(path)]) == 0
    out = capsys.readouterr().out
    suite = load_suite(path)
    client = MlflowClient(mlflow_uri)
    exp = client.get_experiment_by_name(suite_experiment(suite.name))
    runs = [r for r in client.search_runs([exp.experiment_id]) if r.data.tags.get("medtl.stage") == "finetune"]
    assert all(r.info.status == "FINISHED" for r in runs) and len(runs) == len(suite.finetune_cells)
    strategies = {r.data.params["strategy"] for r in runs}
    assert strategies == set(yaml.safe_load(path.read_text())["strategies"])
    for name in strategies:
        assert re.search(rf"/{re.escape(name)}\s", out), name  # a leaderboard row per strategy (source/backbone/strategy)
    # Double transfer: the chained source's fine-tuning runs record both pretraining links.
    chained = [r for r in runs if r.data.params["source"] == "chained"]
    assert chained and all(r.data.params["provenance"] == "scratch > gen-general:gen-general > chained:gen-medical"
                           for r in chained)


def test_a_chained_source_must_name_an_earlier_pretraining_source(tmp_path):
    # write_suite sorts keys: "alpha" (which names "omega") comes first in the file.
    path = write_suite(tmp_path, sources={
        "alpha": {"pretrain": {"dataset": "gen-medical", "options": {"size": 32}, "weights": "source:omega"}},
        "omega": {"pretrain": {"dataset": "gen-general", "options": {"size": 32}}}})
    with pytest.raises(SuiteError, match="sources.alpha.pretrain.weights.*list 'omega' first"):
        load_suite(path)

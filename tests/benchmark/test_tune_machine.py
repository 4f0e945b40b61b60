"""A trial is a cell of its row: it runs on the row's machine (precision, memory format, pipeline, devices).

    PYTHONPATH=. .venv/bin/python -m pytest -q tests/benchmark/test_tune_machine.py
"""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient

from benchmark.cli import main
from tracking.naming import MACHINE_SETTINGS, STAGE_TAG, effective_tag, suite_experiment, tuning_experiment

SUITE = """\
name: tunemachine
target: {dataset: gen-target, options: {size: 16, scale: 0.3}}
folds: 2
seeds: [0]
image_size: 16
backbones: [smallcnn]
strategies: [full]
sources: {none: {weights: scratch}}
precision: bf16-mixed
hparams: {epochs: 1, batch_size: 16}
throughput: {batch_size: 8, warmup: 1, batches: 1, memory_format: contiguous, pipeline: cpu}
"""


@pytest.mark.slow
def test_each_trial_runs_with_the_machine_tags_of_its_rows_cells(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path}/mlruns.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MEDTL_OPTUNA_STORAGE", f"sqlite:///{tmp_path}/optuna.db")
    suite = tmp_path / "tunemachine.yaml"
    suite.write_text(SUITE)
    assert main(["benchmark", str(suite)]) == 0
    assert main(["tune", str(suite), "--n-trials", "2"]) == 0
    client = MlflowClient(uri)
    cells = client.search_runs([client.get_experiment_by_name(suite_experiment("tunemachine")).experiment_id],
                               f"tags.`{STAGE_TAG}` = 'finetune'")
    trials = client.search_runs([client.get_experiment_by_name(tuning_experiment("tunemachine")).experiment_id],
                                f"tags.`{STAGE_TAG}` = 'trial'")
    assert len(cells) == 2 and len(trials) == 2 * 2  # nested tuning: a study of 2 trials per outer fold
    keys = [effective_tag(s) for s in MACHINE_SETTINGS]

    def machine(run):
        return {k: run.data.tags.get(k) for k in keys}

    expected = machine(cells[0])
    # The suite's settings really are what ran: bf16 autocast, contiguous layout, the per-image CPU pipeline, 1 device.
    assert expected == {effective_tag("precision"): "bf16-mixed", effective_tag("memory_format"): "contiguous",
                        effective_tag("pipeline"): "cpu", effective_tag("compile"): "False", effective_tag("devices"): "1"}
    assert all(machine(run) == expected for run in cells + trials), [machine(r) for r in trials]

"""A cell on two devices (CPU processes, gloo): DDP fit via spawn, one run per cell, full test set.

The same code path runs on GPUs (`devices: N` in a suite, `--accelerator gpu`).
"""

import pytest
import torch
from mlflow.tracking import MlflowClient

from backbones import create_backbone
from benchmark.cli import main
from tasks.training import Machine, TrainPlan, get_strategy
from tracking.naming import suite_experiment
from benchmark.plan.suite import load_suite
from tasks.data import load_task
from tasks.training import Machine, TrainPlan, train_and_test
from tests.benchmark.suites import write_suite

pytestmark = pytest.mark.slow


def test_two_device_fit_returns_trained_weights_and_tests_everything():
    task = load_task("gen-target", size=16)
    torch.manual_seed(0)
    backbone = create_backbone("smallcnn")
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    result = train_and_test(task, backbone, TrainPlan(fold=0, k=3, seed=0, hp=get_strategy("full").resolve({"epochs": 1, "batch_size": 16}), size=32), Machine(accelerator="cpu", devices=2))
    after = result.module.backbone.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in after), "rank 0's trained weights did not come back"
    probs, _ = result.module.test_predictions()
    assert len(probs) == len(result.datamodule.fold.test)


def test_two_device_suite_logs_one_run_per_cell(tmp_path, mlflow_uri):
    path = write_suite(tmp_path, name="ddp", devices=2, folds=2, sources={"none": {"weights": "scratch"}}, hparams={"epochs": 1, "batch_size": 16})
    assert main(["benchmark", str(path), "--accelerator", "cpu"]) == 0
    client = MlflowClient(mlflow_uri)
    exp = client.get_experiment_by_name(suite_experiment(load_suite(path).name))
    runs = client.search_runs([exp.experiment_id])
    cells = [r for r in runs if r.data.tags.get("medtl.stage") == "finetune"]
    assert len(cells) == 2 and all(r.info.status == "FINISHED" for r in cells)
    assert sum(r.data.tags.get("medtl.stage") == "suite" for r in runs) == 1  # no parent run per rank
    assert all(r.data.params["devices"] == "2" for r in cells)
    assert len(client.get_metric_history(cells[0].info.run_id, "val/mcc")) == 1

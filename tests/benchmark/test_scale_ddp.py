"""A cell on 2 devices (2 CPU processes, gloo) against the same cell on 1 device.

What makes the comparison meaningful: the global batch is the same (each rank loads batch_size / 2
rows and DDP averages the two gradients), and it holds the whole training fold (76 rows, even, so
DistributedSampler pads nothing), so every step sees the same rows in both runs whatever order the
two samplers draw them in. The backbone has no BatchNorm because torch has no SyncBatchNorm on CPU
(on GPUs `sync_batchnorm` makes BN see the global batch too). What is left is the order of float
additions (one sum of 76 rows against two sums of 38 averaged): after 3 steps the predicted
probabilities agree to PROB_ATOL, and the test metrics to METRIC_ATOL, i.e. no test prediction may
change class (one of 46 flipping moves accuracy by 0.022).
"""

import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient
from torch import nn

from backbones import BACKBONES, Backbone, InputConfig, create_backbone, register_backbone
from tasks.data import load_task
from tasks.training import Machine, TrainPlan, get_strategy
from tasks.training import Machine, TrainPlan, train_and_test
from tracking import CellLogger, ensure_experiment, start_run

pytestmark = pytest.mark.slow

PROB_ATOL = 1e-4  # float32 reordering after 3 Adam steps moves probabilities by ~1e-6; 100x margin
METRIC_ATOL = 1e-6  # every test prediction keeps its class, so the confusion matrix, hence every metric, is equal
# 128 >= 76 training rows: one full-batch step per epoch. No augmentation (each rank draws its own) and no class
# weights (a weighted mean is normalised per shard, so two shards average differently from one batch).
HP = {"epochs": 3, "batch_size": 128, "lr": 3e-3, "augment": "none", "class_weighted": False}


@pytest.fixture
def plainnet():
    """A small CNN without BatchNorm, registered for the test only."""

    @register_backbone("plainnet", family="test")
    def build() -> Backbone:
        body = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(16, 32, 3, padding=1),
                             nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        return Backbone("plainnet", body, 32, InputConfig(size=32, mean=(0.5,) * 3, std=(0.5,) * 3, min_size=8),
                        [body[:3], body[3:]], {})

    yield "plainnet"
    BACKBONES.remove("plainnet")


def _fit(task, devices: int, logger=None):
    torch.manual_seed(0)
    backbone = create_backbone("plainnet")
    return train_and_test(task, backbone, TrainPlan(fold=0, k=3, seed=0, hp=get_strategy("full").resolve(HP), size=32), Machine(accelerator="cpu", devices=devices), logger=logger)


def test_two_devices_match_one_device_log_one_run_and_aggregated_throughput(mlflow_uri, plainnet):
    task = load_task("gen-target", size=16)
    client = MlflowClient(mlflow_uri)
    experiment = ensure_experiment(client, "ddp-vs-one")
    run_id = start_run(client, experiment, name="2 devices", tags={})

    one = _fit(task, 1)
    two = _fit(task, 2, logger=CellLogger(run_id, mlflow_uri))

    assert len(two.datamodule.fold.train) % 2 == 0 and len(two.datamodule.fold.train) <= HP["batch_size"]
    assert two.datamodule.batch_size == HP["batch_size"] // 2  # per-device share of the global batch
    (p1, y1), (p2, y2) = one.module.test_predictions(), two.module.test_predictions()
    assert len(p2) == len(two.datamodule.fold.test)  # the whole test set, once
    assert torch.equal(y1, y2)
    diff = (p1 - p2).abs().max().item()
    assert diff <= PROB_ATOL, f"2-device probabilities differ from 1-device ones by {diff:.2e}"
    test_keys = [k for k in one.metrics if k.startswith("test/")]
    assert {"test/mcc", "test/acc"} <= set(test_keys)
    for key in test_keys:
        assert two.metrics[key] == pytest.approx(one.metrics[key], abs=METRIC_ATOL), key
    print(f"\nDDP vs 1 device: max |dprob| = {diff:.2e}; "
          + ", ".join(f"{k} {one.metrics[k]:.4f} vs {two.metrics[k]:.4f}" for k in ("test/mcc", "test/acc")))

    runs = client.search_runs([experiment])
    assert [r.info.run_id for r in runs] == [run_id]  # no run per rank
    metrics = runs[0].data.metrics
    # ThroughputMonitor on rank zero: all ranks' img/s = per-device img/s x world size (2).
    assert metrics["train/samples_per_sec"] == pytest.approx(2 * metrics["train/device/samples_per_sec"])
    assert metrics["train/samples_per_sec"] > 0
    assert metrics["train/device/flops_per_sec"] > 0  # TrainingFlops set flops_per_batch
    assert "train/device/mfu" not in metrics  # Lightning knows no CPU peak, so no MFU is claimed
    assert len(client.get_metric_history(run_id, "val/mcc")) == HP["epochs"]  # rank zero logs each epoch once
    print("throughput logged:", {k: round(v, 1) for k, v in metrics.items() if "per_sec" in k})


def test_a_global_batch_that_does_not_split_over_the_devices_is_refused(plainnet):
    task = load_task("gen-target", size=16)
    with pytest.raises(ValueError, match=r"batch_size 127 does not split evenly over 2 devices.*multiple of 2"):
        train_and_test(task, create_backbone("plainnet"), TrainPlan(fold=0, k=3, seed=0, hp=get_strategy("full").resolve({**HP, "batch_size": 127}), size=32), Machine(accelerator="cpu", devices=2))

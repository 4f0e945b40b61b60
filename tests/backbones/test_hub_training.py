"""A hub backbone from a local cache trains and probes like any other; a suite refuses a missing one before any run.

    PYTHONPATH=. .venv/bin/python -m pytest tests/backbones/test_hub_training.py -q
"""

from __future__ import annotations

import pytest
import torch

from backbones import create_backbone
from tasks.data import load_task
from tasks.training import Machine, TrainPlan, get_strategy, train_and_test
from tests.backbones.hub_cache import hub_cache, publish  # noqa: F401 - fixture

COMMIT = "3" * 40


@pytest.fixture(scope="module")
def task():
    return load_task("gen-target", None, scale=0.5, size=32)


def _fit(task, strategy: str, tmp_path, **overrides):
    torch.manual_seed(0)
    backbone = create_backbone("hub:org/tiny-vit", "hub")
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    hp = get_strategy(strategy).resolve({"batch_size": 16, **overrides})
    result = train_and_test(task, backbone, TrainPlan(fold=0, k=3, seed=0, hp=hp, size=32, strategy=strategy), Machine(accelerator="cpu", feature_cache=tmp_path / "features"))
    return result, before


def test_linear_probe_on_hub_features_trains_the_head_only(hub_cache, task, tmp_path):
    publish(hub_cache, "org/tiny-vit", COMMIT)
    result, before = _fit(task, "linear", tmp_path, epochs=1)
    assert {"test/mcc", "test/auc", "test/acc"} <= set(result.metrics)
    assert all(torch.isfinite(torch.tensor(v)) for v in result.metrics.values())
    after = result.module.backbone.state_dict()
    assert all(torch.equal(after[k], v) for k, v in before.items())


def test_layerwise_unfreezes_the_last_vit_block_first(hub_cache, task, tmp_path):
    publish(hub_cache, "org/tiny-vit", COMMIT)
    # 2 epochs, one group per epoch: epoch 1 unfreezes the top group (last block + final norm) only.
    result, before = _fit(task, "layerwise", tmp_path, epochs=2, unfreeze_every=1, select="last")
    backbone = result.module.backbone
    after = backbone.state_dict()
    names = {id(p): n for n, p in backbone.named_parameters()}

    def changed(group) -> list[bool]:
        return [not torch.equal(after[names[id(p)]], before[names[id(p)]]) for p in group.parameters()]

    embedding, first_block, top = backbone.layer_groups()
    assert any(changed(top)) and not any(changed(first_block)) and not any(changed(embedding))


def test_svm_reads_the_cls_features(hub_cache, task, tmp_path):
    publish(hub_cache, "org/tiny-vit", COMMIT)
    result, _ = _fit(task, "svm", tmp_path)
    assert 0.0 <= result.metrics["test/acc"] <= 1.0 and "test/mcc" in result.metrics


def test_suite_with_an_uncached_hub_model_fails_before_any_run(hub_cache, tmp_path, mlflow_uri):
    from benchmark.plan.suite import SuiteError, load_suite
    from tests.benchmark.suites import write_suite

    path = write_suite(tmp_path, name="hub", backbones=["hub:org/absent"], sources={"dinov2": {"weights": "hub"}})
    with pytest.raises(SuiteError) as info:
        load_suite(path)
    message = str(info.value)
    assert "sources.dinov2" in message and str(hub_cache / "models--org--absent") in message
    assert "hf download org/absent" in message
    assert not (tmp_path / "mlruns.db").exists()  # no MLflow store, let alone a run


@pytest.mark.slow
def test_hub_backbone_cells_run_in_a_suite(hub_cache, tmp_path, mlflow_uri):
    from mlflow.tracking import MlflowClient

    from benchmark.plan.suite import load_suite
    from benchmark.run.runner import run_suite
    from tracking.naming import suite_experiment
    from tests.benchmark.suites import write_suite

    publish(hub_cache, "org/tiny-vit", COMMIT)
    path = write_suite(tmp_path, name="hub", backbones=["hub:org/tiny-vit"], strategies=["linear", "full"],
                       sources={"none": {"weights": "scratch"}, "tiny-vit": {"weights": "hub"}},
                       hparams={"epochs": 1, "batch_size": 16})
    outcome = run_suite(path, echo=lambda *_: None)
    assert outcome.exit_code == 0
    client = MlflowClient(mlflow_uri)
    experiment = client.get_experiment_by_name(suite_experiment(load_suite(path).name))
    runs = client.search_runs([experiment.experiment_id], "attributes.status = 'FINISHED' and tags.`medtl.stage` = 'finetune'")
    assert len(runs) == 2 * 2 * 2  # sources x strategies x folds
    assert {r.data.params["backbone"] for r in runs} == {"hub:org/tiny-vit"}
    assert {r.data.params["weights"] for r in runs} == {"scratch", "hub"}
    assert all("test/mcc" in r.data.metrics for r in runs)
    # The cell's provenance names the exact hub id and commit it started from.
    assert {r.data.params["provenance"] for r in runs} == {"scratch", f"hub:org/tiny-vit@{COMMIT}"}

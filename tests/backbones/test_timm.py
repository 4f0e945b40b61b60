"""timm backbones: any `timm:<model>`, the seed papers' Inceptions, and ImageNet weights through timm's cache.

    .venv/bin/python -m pytest tests/backbones/test_timm.py -q
"""

from __future__ import annotations

import socket
import time

import pytest
import torch

from backbones import UnknownBackboneError, WeightsError, backbone_entry, create_backbone, list_backbones


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def hf_cache(tmp_path, monkeypatch):
    """An empty Hugging Face cache and a hub endpoint that refuses connections: offline, no DNS involved."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{_closed_port()}")
    return tmp_path / "hub"


def test_inceptions_of_the_papers_are_registered_through_timm():
    for name in ("inception_v3", "inception_resnet_v2"):
        assert name in list_backbones() and backbone_entry(name).family == "timm"
        net = create_backbone(name)
        assert net.input_config.size == 299 and net.input_config.min_size == 75
        assert len(net.layer_groups()) == 5


def test_any_timm_model_is_a_backbone():
    net = create_backbone("timm:resnet18").eval()
    with torch.no_grad():
        assert net(torch.randn(2, 3, 64, 64)).shape == (2, net.num_features) == (2, 512)
    assert net.input_config.mean == (0.485, 0.456, 0.406) and "layer4" in net.feature_taps()
    with pytest.raises(UnknownBackboneError, match="timm:resnet19.*Similar timm models: .*resnet"):
        create_backbone("timm:resnet19")


def test_imagenet_offline_without_cache_names_cache_and_command(hf_cache):
    start = time.monotonic()
    with pytest.raises(WeightsError) as info:
        create_backbone("inception_resnet_v2", "imagenet")
    message = str(info.value)
    assert str(hf_cache / "models--timm--inception_resnet_v2.tf_in1k") in message
    assert "timm.create_model('inception_resnet_v2.tf_in1k', pretrained=True)" in message
    assert time.monotonic() - start < 30  # no minute-long retry loop


def test_imagenet_weights_load_from_the_hugging_face_cache(hf_cache):
    """A cache laid out as huggingface_hub writes it (refs/main -> snapshots/<commit>/model.safetensors)."""
    import timm
    from safetensors.torch import save_file

    reference = timm.create_model("resnet18.a1_in1k", pretrained=False)  # stands in for the downloaded file
    repo = hf_cache / "models--timm--resnet18.a1_in1k"
    snapshot = repo / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, snapshot / "model.safetensors")
    net = create_backbone("timm:resnet18.a1_in1k", "imagenet")
    assert torch.equal(net.body.conv1.weight, reference.conv1.weight)
    assert torch.equal(net.body.layer4[1].bn2.running_var, reference.layer4[1].bn2.running_var)


@pytest.mark.slow
def test_timm_backbones_fine_tune_in_a_suite(tmp_path, mlflow_uri):
    from mlflow.tracking import MlflowClient

    from benchmark.run.runner import run_suite
    from benchmark.plan.suite import load_suite
    from tests.benchmark.suites import write_suite
    from tracking.naming import suite_experiment

    path = write_suite(tmp_path, name="timm", backbones=["timm:resnet18", "inception_resnet_v2"], image_size=75,
                       target={"dataset": "gen-target", "options": {"size": 32, "scale": 0.5}},
                       sources={"none": {"weights": "scratch"}}, hparams={"epochs": 1, "batch_size": 16})
    outcome = run_suite(path, echo=lambda *_: None)
    assert outcome.exit_code == 0 and len(outcome.ran) == 4
    client = MlflowClient(mlflow_uri)
    experiment = client.get_experiment_by_name(suite_experiment(load_suite(path).name))
    runs = client.search_runs([experiment.experiment_id], "attributes.status = 'FINISHED' and tags.`medtl.stage` = 'finetune'")
    assert sorted({r.data.params["backbone"] for r in runs}) == ["inception_resnet_v2", "timm:resnet18"]
    assert all("test/mcc" in r.data.metrics for r in runs)

"""Pretrain -> export -> `file:` load gives the identical backbone; a wrong file fails readably."""

import torch

from backbones import WeightsError, create_backbone
from tasks.training import Machine, TrainPlan, get_strategy
from pretrain import export_backbone, pretrain_backbone, read_provenance
from tasks.data import load_task

import pytest


def test_pretrain_export_file_roundtrip(tmp_path):
    task = load_task("gen-general", size=32, per_class=6)
    backbone = create_backbone("smallcnn", "scratch")
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    result, path = pretrain_backbone(
        task, backbone, TrainPlan(fold=0, k=5, seed=0, hp=get_strategy("full").resolve({"epochs": 1, "batch_size": 16}), size=32),
        Machine(accelerator="cpu"), out_dir=tmp_path, spec_hash="abc123", start_weights="scratch",
    )
    trained = backbone.state_dict()
    assert any(not torch.equal(before[k], trained[k]) for k in trained), "pretraining changed nothing"
    loaded = create_backbone("smallcnn", f"file:{path}")
    for key, value in trained.items():
        assert torch.equal(loaded.state_dict()[key], value), key
    provenance = read_provenance(path)
    assert provenance["source"] == "gen-general" and provenance["spec_hash"] == "abc123"
    assert provenance["classes"] == list(task.meta.class_names) and provenance["epochs"] == 1
    assert "test/mcc" in provenance["metrics"]
    assert (tmp_path / "provenance.json").is_file()


def test_checkpoint_of_another_backbone_reports_a_diff(tmp_path):
    path = export_backbone(create_backbone("resnet18"), tmp_path, {"backbone": "resnet18"})
    with pytest.raises(WeightsError) as info:
        create_backbone("smallcnn", f"file:{path}")
    message = str(info.value)
    assert str(path) in message and "'resnet18'" in message and "'smallcnn'" in message and "missing in file" in message


def test_missing_checkpoint_names_the_path(tmp_path):
    with pytest.raises(WeightsError, match="does not exist"):
        create_backbone("smallcnn", f"file:{tmp_path / 'nope.pt'}")

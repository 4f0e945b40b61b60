"""Every 2D MedMNIST flag at every size resolves through `medmnist.INFO`; multi-label trains end to end."""

import numpy as np
import pytest

from backbones import create_backbone
from tasks.training import Machine, TrainPlan, get_strategy
from tasks.data import load_task
from tasks.data.adapters.medmnist import medmnist_info
from tasks.training import Machine, TrainPlan, train_and_test
from tests.tasks.data._layouts import write_npz as _write_npz

FLAGS_2D = sorted(f for f in medmnist_info() if not f.endswith("3d"))


@pytest.mark.parametrize("flag", FLAGS_2D)
@pytest.mark.parametrize("size", [28, 64])
def test_flag_and_size_resolve(tmp_path, flag, size):
    entry = medmnist_info()[flag]
    name = f"{flag}.npz" if size == 28 else f"{flag}_{size}.npz"
    arrays = _write_npz(tmp_path / name, entry, side=size)
    task = load_task("medmnist", tmp_path, flag=flag, size=size)
    assert task.meta.num_classes == len(entry["label"])
    assert task.meta.class_names[0] == entry["label"]["0"]
    assert task.index["split"].tolist() == ["train"] * 6 + ["val"] * 2 + ["test"] * 4
    assert task.images.load(0).shape == (size, size, 3)
    if entry["task"].startswith("multi-label"):
        assert task.meta.kind == "multilabel"
        assert task.index["labels"].iloc[0] == tuple(np.flatnonzero(arrays["train_labels"][0]).tolist())
    else:
        assert task.labels[:6].tolist() == arrays["train_labels"].ravel().tolist()


def test_multilabel_chestmnist_trains_and_tests(tmp_path):
    entry = medmnist_info()["chestmnist"]
    _write_npz(tmp_path / "chestmnist.npz", entry, n=(48, 12, 16))
    task = load_task("medmnist", tmp_path / "chestmnist.npz")
    result = train_and_test(task, create_backbone("smallcnn"), TrainPlan(fold=-1, k=0, seed=0, hp=get_strategy("full").resolve({"epochs": 1, "batch_size": 16}), size=32), Machine(accelerator="cpu"))
    assert {"test/mcc", "test/f1", "test/auc"} <= set(result.metrics)
    probs, targets = result.module.test_predictions()
    assert probs.shape == targets.shape == (16, 14) and ((probs >= 0) & (probs <= 1)).all()

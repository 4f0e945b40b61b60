"""Minority-class extension (Hicks et al.): extra images reach training rows only, of the named classes."""

import os

import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from PIL import Image

from benchmark.run.runner import run_suite
from tracking.naming import suite_experiment
from benchmark.plan.suite import load_suite
from tasks.data import DataError, TaskDataModule, load_task
from tasks.data.extension import extend_training, extra_rows
from tests.benchmark.suites import write_suite


def _folder(root, counts: dict[str, int]):
    for name, n in counts.items():
        (root / name).mkdir(parents=True)
        for i in range(n):
            pixels = np.full((40, 40, 3), 10 * i, dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return root


def _fold(task, **kw):
    dm = TaskDataModule(task, fold=kw.get("fold", 0), k=kw.get("k", 3), seed=0, size=32, mean=(0.5,) * 3, std=(0.5,) * 3,
                        augment="none", fraction=kw.get("fraction", 1.0))
    dm.setup()
    return dm


def test_extra_rows_join_training_only_with_the_target_class_id(tmp_path):
    target = load_task("gen-target", size=32)
    extra = load_task("class-folders", _folder(tmp_path / "extra", {"lesion_90deg": 5, "other": 3}))
    extended = extend_training(target, [(extra, ["lesion_90deg"], "test")])
    added = extra_rows(extended)
    assert len(extended.index) == len(target.index) + 5 and len(added) == 5
    assert (extended.labels[added] == target.meta.class_names.index("lesion_90deg")).all()
    for fold in range(3):
        plain, ext = _fold(target, fold=fold).fold, _fold(extended, fold=fold).fold
        # The target's own split is untouched; the extra rows are in training and nowhere else.
        np.testing.assert_array_equal(plain.val, ext.val)
        np.testing.assert_array_equal(plain.test, ext.test)
        np.testing.assert_array_equal(ext.train[:len(plain.train)], plain.train)
        assert set(ext.train[len(plain.train):]) == set(added)
        assert not set(added) & (set(ext.val) | set(ext.test))
    # A label fraction reduces the target's training rows; the extension is added in full afterwards.
    half = _fold(extended, fraction=0.5).fold
    assert set(added) <= set(half.train) and len(half.train) < len(_fold(extended).fold.train)
    image, label = _fold(extended).train_dataloader().dataset[len(_fold(extended).fold.train) - 1]
    assert image.shape == (3, 32, 32) and int(label) == target.meta.class_names.index("lesion_90deg")


def test_unknown_class_is_refused_with_both_class_lists(tmp_path):
    target = load_task("gen-target", size=32)
    extra = load_task("class-folders", _folder(tmp_path / "extra", {"polyps": 2, "lesion_0deg": 2}))
    with pytest.raises(DataError, match=r"'polyps' is not a class of the target.*lesion_0deg, lesion_45deg"):
        extend_training(target, [(extra, ["polyps"], "target.extra_train[0]")])
    with pytest.raises(DataError, match=r"target.extra_train\[0\].*no class 'lesion_45deg' \(it has lesion_0deg, polyps\)"):
        extend_training(target, [(extra, ["lesion_45deg"], "target.extra_train[0]")])


@pytest.mark.slow
def test_suite_with_extension_trains_on_more_rows_and_hashes_apart(tmp_path):
    _folder(tmp_path / "data" / "extra", {"lesion_135deg": 6})
    base = dict(name="ext", sources={"none": {"weights": "scratch"}}, folds=2, hparams={"epochs": 1, "batch_size": 32})
    plain = load_suite(write_suite(tmp_path, **base))
    extended_path = write_suite(tmp_path, **{**base, "target": {
        "dataset": "gen-target", "options": {"size": 32},
        "extra_train": [{"dataset": "class-folders", "path": "extra", "classes": ["lesion_135deg"]}]}})
    extended = load_suite(extended_path)
    assert {c.hash for c in plain.cells}.isdisjoint({c.hash for c in extended.cells})
    assert all(c.extensions[0]["classes"] == ["lesion_135deg"] for c in extended.cells)
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
        result = run_suite(extended_path, uri=uri, accelerator="cpu", data_root=tmp_path / "data", echo=lambda *_: None)
    finally:
        os.chdir(cwd)
    assert result.exit_code == 0 and len(result.ran) == 2
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(suite_experiment(extended.name))
    runs = [r for r in client.search_runs([exp.experiment_id]) if r.data.tags.get("medtl.stage") == "finetune"]
    target = load_task("gen-target", size=32)
    for run in runs:
        plain_train = len(_fold(target, fold=int(run.data.params["fold"]), k=2).fold.train)
        assert run.data.metrics["data/train_rows"] == plain_train + 6
        assert run.data.metrics["data/test_rows"] + run.data.metrics["data/val_rows"] + plain_train == len(target.index)
        assert "lesion_135deg" in run.data.params["extra_train"]

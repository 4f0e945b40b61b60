"""The class-folder and MedMNIST adapters on the real fixtures in ../shared/data."""

import numpy as np
import pytest

from tasks.data import DataError, TaskDataModule, UnknownDatasetError, load_task, make_fold

pytestmark = pytest.mark.fixtures


def test_class_folders_on_dtd10(shared_data):
    task = load_task("class-folders", shared_data / "dtd10")
    assert task.meta.num_classes == 10 and len(task.index) == 1200
    assert np.bincount(task.labels).tolist() == [120] * 10
    assert task.meta.class_names[0] == "banded"
    # Every row's label is the folder it lives in.
    assert all(item.split("/")[0] == task.meta.class_names[label] for item, label in zip(task.index["item"], task.labels))
    grey = [i for i in task.index["item"] if __import__("PIL.Image").Image.open(shared_data / "dtd10" / i).mode == "L"]
    assert grey, "the fixture is documented to contain grayscale images"
    pixels = task.images.load(grey[0])
    assert pixels.ndim == 3 and pixels.shape[2] == 3 and pixels.dtype == np.uint8
    assert (pixels[..., 0] == pixels[..., 1]).all() and pixels.std() > 0  # replicated, not black


def test_medmnist_breastmnist_official_split(shared_data):
    task = load_task("medmnist", shared_data / "breastmnist" / "breastmnist.npz")
    assert task.meta.name == "medmnist:breastmnist"
    assert task.meta.class_names == ("malignant", "normal, benign") and task.meta.kind == "binary"
    assert task.index["split"].value_counts().to_dict() == {"train": 546, "test": 156, "val": 78}
    fold = make_fold(task, fold=-1, k=0, seed=0)
    assert (len(fold.train), len(fold.val), len(fold.test)) == (546, 78, 156)
    assert task.images.load(0).shape == (28, 28, 3)
    data = np.load(shared_data / "breastmnist" / "breastmnist.npz")
    assert task.labels[:546].tolist() == data["train_labels"].ravel().tolist()


def test_medmnist_batches_through_the_datamodule(shared_data):
    task = load_task("medmnist", shared_data / "breastmnist" / "breastmnist.npz")
    dm = TaskDataModule(task, fold=-1, k=0, seed=0, size=32, mean=(0.5,) * 3, std=(0.5,) * 3, batch_size=16)
    dm.setup()
    x, y = next(iter(dm.test_dataloader()))
    assert x.shape == (16, 3, 32, 32) and y.dtype.is_floating_point is False
    weights = dm.class_weights()
    counts = np.bincount(task.labels[dm.fold.train], minlength=2)
    assert weights.tolist() == pytest.approx((counts.sum() / (2 * counts)).tolist())


def test_train_only_medmnist_subset_loads(shared_data):
    task = load_task("medmnist", shared_data / "pneumoniamnist_train" / "pneumoniamnist_train.npz")
    assert len(task.index) == 2428 and np.bincount(task.labels).tolist() == [1214, 1214]
    assert task.meta.class_names == ("normal", "pneumonia")


def test_unknown_dataset_lists_valid_names():
    with pytest.raises(UnknownDatasetError) as info:
        load_task("kvasir-v9")
    assert "kvasir-v9" in str(info.value) and "gen-target" in str(info.value) and "medmnist" in str(info.value)


def test_missing_root_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="not a folder"):
        load_task("class-folders", tmp_path / "nowhere")

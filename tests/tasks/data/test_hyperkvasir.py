"""HyperKvasir labeled images against the REAL official split CSVs (../shared/data/hyperkvasir or
$MEDTL_FIXTURES/hyperkvasir): one tiny JPEG per CSV row is written in the release's folder layout,
then the adapter must reproduce the CSV's class counts and fold ids exactly.

    .venv/bin/python -m pytest tests/tasks/data/test_hyperkvasir.py -q -p no:cacheprovider
"""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
from tests.tasks.data._layouts import FIXTURES, class_counts, image_bytes, write_image

from tasks.data import DataError, load_task
from tasks.data.adapters import hyperkvasir as adapter

REAL = FIXTURES / "hyperkvasir"
pytestmark = [
    pytest.mark.fixtures,
    pytest.mark.skipif(not (REAL / "5_fold_split.csv").is_file(), reason=f"real HyperKvasir split CSVs not found in {REAL}"),
]


def _write_release(root, frame):
    jpeg = image_bytes(100)
    labeled = root / "labeled-images"
    for folder in {adapter.RELEASE_FOLDERS[c] for c in frame["class-name"]}:
        (labeled / folder).mkdir(parents=True, exist_ok=True)
    for name, cls in zip(frame["file-name"], frame["class-name"]):
        (labeled / adapter.RELEASE_FOLDERS[cls] / name).write_bytes(jpeg)
    (root / "official_splits").mkdir()
    for k in (2, 5):
        shutil.copy(REAL / f"{k}_fold_split.csv", root / "official_splits")
    return labeled


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    """The full labeled-images tree (10,662 files of ~600 bytes) plus official_splits/."""
    root = tmp_path_factory.mktemp("hyper-kvasir")
    _write_release(root, pd.read_csv(REAL / "5_fold_split.csv", sep=";"))
    return root


@pytest.mark.parametrize("k", [2, 5])
def test_official_folds_match_the_real_csv(release, k):
    real = pd.read_csv(REAL / f"{k}_fold_split.csv", sep=";")
    task = load_task("hyperkvasir", release, official_folds=k)
    assert task.meta.name == f"hyperkvasir:{k}fold"
    assert len(task.index) == len(real) == adapter.CARD.published.total
    assert task.meta.num_classes == 23 and task.meta.class_names == tuple(sorted(real["class-name"].unique()))
    assert class_counts(task) == real["class-name"].value_counts().to_dict()
    assert (task.index["split"] == "").all()
    folds = adapter.official_fold_assignment(task)
    assert folds.dtype == np.int64 and set(folds) == set(range(k))
    by_file = dict(zip(real["file-name"], real["split-index"]))
    names = task.index["item"].map(lambda item: item.rsplit("/", 1)[-1])
    assert (folds == names.map(by_file).to_numpy()).all()
    by_class = dict(zip(real["file-name"], real["class-name"]))
    assert (np.asarray(task.meta.class_names)[task.labels] == names.map(by_class).to_numpy()).all()
    # a polyp lives in the release's "polyps" folder but keeps the CSV's spelling
    polyp = task.index[task.labels == task.meta.class_names.index("polyp")]["item"].iloc[0]
    assert polyp.startswith("lower-gi-tract/pathological-findings/polyps/")
    assert task.images.load(polyp).shape == (16, 16, 3)


def test_without_official_folds_labels_still_come_from_the_csv(release):
    task = load_task("hyperkvasir", release / "labeled-images")
    assert adapter.official_fold_assignment(task) is None
    assert "official_fold" not in task.index.columns
    assert class_counts(task)["hemorroids"] == 6


def test_labels_from_folders_when_no_csv(tmp_path):
    real = pd.read_csv(REAL / "2_fold_split.csv", sep=";")
    subset = real.groupby("class-name").head(2)
    _write_release(tmp_path, subset)
    shutil.rmtree(tmp_path / "official_splits")
    task = load_task("hyperkvasir", tmp_path)
    assert task.meta.class_names == tuple(sorted(adapter.RELEASE_FOLDERS))  # the CSV spellings
    assert set(class_counts(task).values()) == {2}
    with pytest.raises(DataError, match="2_fold_split.csv not found.*splits_dir"):
        load_task("hyperkvasir", tmp_path, official_folds=2)


def test_csv_row_without_image_names_csv_file_and_fix(tmp_path):
    real = pd.read_csv(REAL / "5_fold_split.csv", sep=";")
    labeled = _write_release(tmp_path, real.groupby("class-name").head(5))
    with pytest.raises(DataError) as err:
        load_task("hyperkvasir", tmp_path, official_folds=5)
    message = str(err.value)
    assert "5_fold_split.csv" in message and real["file-name"].iloc[5] in message and str(labeled) in message
    assert "Fix: extract the complete hyper-kvasir-labeled-images.zip" in message


def test_flat_fixture_folder_via_splits_dir_and_moved_file(tmp_path):
    real = pd.read_csv(REAL / "2_fold_split.csv", sep=";")
    labeled = _write_release(tmp_path, real)
    shutil.rmtree(tmp_path / "official_splits")
    task = load_task("hyperkvasir", tmp_path, official_folds=2, splits_dir=str(REAL))
    assert len(task.index) == len(real)
    # a file moved into another class folder would get a wrong label from one of the two sources
    moved = real[real["class-name"] == "ileum"]["file-name"].iloc[0]
    (labeled / adapter.RELEASE_FOLDERS["ileum"] / moved).rename(labeled / adapter.RELEASE_FOLDERS["polyp"] / moved)
    with pytest.raises(DataError, match=f"{moved}.*'ileum'.*restore"):
        load_task("hyperkvasir", tmp_path, official_folds=2, splits_dir=str(REAL))


def test_bad_split_index_and_bad_option(tmp_path):
    write_image(tmp_path / "labeled-images" / adapter.RELEASE_FOLDERS["ileum"] / "a.jpg")
    (tmp_path / "official_splits").mkdir()
    (tmp_path / "official_splits" / "2_fold_split.csv").write_text("file-name;class-name;split-index\na.jpg;ileum;7\n")
    with pytest.raises(DataError, match="line 2: '7'"):
        load_task("hyperkvasir", tmp_path, official_folds=2)
    with pytest.raises(DataError, match="official_folds must be 2, 5"):
        load_task("hyperkvasir", tmp_path, official_folds=3)

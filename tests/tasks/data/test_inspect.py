"""`verify` and `describe` on tiny class-folder datasets and on the real BreastMNIST fixture.

    .venv/bin/python -m pytest tests/tasks/data/test_inspect.py -q
"""

from __future__ import annotations

import os
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tasks.data.describe import describe
from tasks.data.errors import UnknownDatasetError
from tasks.data import DATASETS, Published
from tasks.data.verify import verify

FIXTURES = Path(os.environ.get("MEDTL_FIXTURES", Path(__file__).resolve().parents[3].parent / "shared" / "data"))


def make_class_folders(root: Path, counts: dict[str, int], size=(24, 16), seed=0) -> Path:
    """root/<class>/img<i>.jpg of random noise (so no two are identical)."""
    rng = np.random.default_rng(seed)
    for cls, n in counts.items():
        (root / cls).mkdir(parents=True)
        for i in range(n):
            pixels = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / cls / f"img{i}.jpg", quality=90)
    return root


@pytest.fixture
def clean(tmp_path) -> Path:
    return make_class_folders(tmp_path / "clean", {"polyp": 3, "normal": 2})


@pytest.fixture
def damaged(tmp_path) -> Path:
    root = make_class_folders(tmp_path / "damaged", {"polyp": 3, "normal": 2})
    data = (root / "polyp" / "img0.jpg").read_bytes()
    (root / "polyp" / "cut.jpg").write_bytes(data[: len(data) // 2])  # an interrupted copy
    shutil.copy(root / "normal" / "img1.jpg", root / "normal" / "img1 copy.jpg")
    return root


def test_clean_dataset_verifies(clean):
    report = verify("class-folders", clean, progress=False)
    assert report.ok and report.problems == []
    assert report.counts == {"normal": 2, "polyp": 3} and report.checked == 5
    assert report.to_text().splitlines()[-1].startswith("OK")


def test_truncated_and_duplicate_files_are_reported_by_name(damaged):
    report = verify("class-folders", damaged, progress=False, workers=2)
    assert not report.ok
    [error] = report.errors
    assert error.file.endswith("cut.jpg") and "truncated" in error.problem and error.fix
    [warning] = report.warnings
    assert "normal/img1.jpg" in warning.file and "normal/img1 copy.jpg" in warning.file
    assert "2 identical images" in warning.problem
    text = report.to_text()
    assert "cut.jpg" in text and "img1 copy.jpg" in text and "FAILED (1 error(s))" in text


def test_duplicates_alone_are_warnings(clean):
    shutil.copy(clean / "polyp" / "img0.jpg", clean / "normal" / "same.jpg")
    report = verify("class-folders", clean, progress=False)
    assert report.ok and len(report.warnings) == 1 and "different labels" in report.warnings[0].problem


def test_counts_are_compared_with_published_ones(clean, monkeypatch):
    entry = DATASETS.get("class-folders")
    card = replace(entry.card, published=Published(total=6, classes=2, per_class=3))
    with DATASETS.swapped("class-folders", replace(entry, card=card)):
        report = verify("class-folders", clean, progress=False)
    problems = " | ".join(p.problem for p in report.errors)
    assert "images: 5, published 6" in problems and "{'normal': 2}" in problems


def test_unindexable_root_is_a_problem_not_a_crash(tmp_path):
    report = verify("class-folders", tmp_path / "missing", progress=False)
    assert not report.ok and "is not a folder" in report.errors[0].problem


def test_unknown_dataset_raises(tmp_path):
    with pytest.raises(UnknownDatasetError):
        verify("no-such-set", tmp_path)


def test_describe_histogram_sizes_and_groups(clean):
    d = describe("class-folders", clean)
    assert d.classes["images"].to_dict() == {"normal": 2, "polyp": 3}
    assert d.classes["total"].sum() == 5
    assert d.sizes.to_dict("records") == [{"width": 24, "height": 16, "images": 5}]
    assert d.groups.loc["all", "groups"] == 5
    assert "polyp" in d.to_text() and "width 24..24" in d.to_text()


def test_describe_official_splits(tmp_path):
    make_class_folders(tmp_path / "ds" / "train", {"a": 3, "b": 1}, seed=1)
    make_class_folders(tmp_path / "ds" / "test", {"a": 1, "b": 2}, seed=2)
    d = describe("class-folders", tmp_path / "ds", sample=3)
    assert list(d.classes.columns) == ["train", "test", "total"]
    assert d.classes.loc["b"].to_dict() == {"train": 1, "test": 2, "total": 3}
    assert d.splits["images"].to_dict() == {"train": 4, "test": 3} and d.sampled == 3


@pytest.mark.fixtures
def test_breastmnist_fixture_counts_match_and_md5_is_only_a_note():
    path = FIXTURES / "breastmnist" / "breastmnist.npz"
    if not path.is_file():
        pytest.skip(f"BreastMNIST fixture not found at {path}; set MEDTL_FIXTURES to the shared data folder")
    report = verify("medmnist", path, progress=False)
    assert report.ok, report.to_text()
    assert report.split_counts == {"train": 546, "val": 78, "test": 156}
    assert any("counts match" in n for n in report.notes)
    assert any("not the official" in n for n in report.notes)  # re-saved copy: a note, not an error
    # the known train/test duplicate of the source data is a warning naming both items
    assert any("train" in w.file and "test" in w.file for w in report.warnings)
    d = describe("medmnist", path)
    assert d.classes["total"].sum() == 780 and list(d.classes.columns) == ["train", "val", "test", "total"]


# The publishers' numbers (papers and download pages), checked against the one place medtl keeps them.
PAPER_COUNTS = {
    "kvasir-v1": {"images": 4000, "classes": 8, "per_class": 500},  # Pogorelov et al. 2017
    "kvasir-v2": {"images": 8000, "classes": 8, "per_class": 1000},
    "medico2018": {"images": 5293, "classes": 16, "min_per_class": 4, "max_per_class": 613},
    "chest-xray": {"images": 5856, "classes": 2},  # Kermany et al. 2018
    "hyperkvasir": {"images": 10662, "classes": 23, "min_per_class": 6, "max_per_class": 1148},  # Borgli et al. 2020
}


@pytest.mark.parametrize("name", sorted(PAPER_COUNTS))
def test_published_counts_are_declared_once_on_the_card(name):
    from tasks.data import dataset_card

    entry, ours = PAPER_COUNTS[name], dataset_card(name).published
    assert (ours.total, ours.classes) == (entry["images"], entry["classes"]), name
    for key in ("per_class", "min_per_class", "max_per_class"):
        if entry.get(key) is not None:
            assert getattr(ours, key) == entry[key], (name, key)


def test_multilabel_histogram_counts_image_label_pairs(tmp_path):
    rng = np.random.default_rng(0)
    rows = ["path,labels,split"]
    for i, labels in enumerate(["a;b", "a", "b;c", "c", "a;c"]):
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(tmp_path / f"{i}.png")
        rows.append(f"{i}.png,{labels},{'train' if i < 3 else 'test'}")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    d = describe("csv", tmp_path)
    assert d.kind == "multilabel" and d.classes["total"].to_dict() == {"a": 3, "b": 2, "c": 3}
    assert d.classes.loc["c"].to_dict() == {"train": 1, "test": 2, "total": 3}
    report = verify("csv", tmp_path, progress=False)
    assert report.ok and report.counts == {"a": 3, "b": 2, "c": 3}

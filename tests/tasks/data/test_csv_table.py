"""The generic `csv` dataset: path,label(s)[,group][,split] with paths relative to the CSV.

    .venv/bin/python -m pytest tests/tasks/data/test_csv_table.py -q -p no:cacheprovider
"""

from __future__ import annotations

import pytest
from tests.tasks.data._layouts import write_image

from tasks.data import DataError, load_task


def _images(root, names):
    for name in names:
        write_image(root / name)


def test_single_label_with_groups_splits_and_natural_class_order(tmp_path):
    _images(tmp_path, ["img/a.png", "img/b.png", "img/c.png", "img/d.png"])
    (tmp_path / "labels.csv").write_text(
        "path,label,group,split\nimg/a.png,10,p1,train\nimg/b.png,9,p1,train\nimg/c.png,2,,test\nimg/d.png,10,p2,TEST\n"
    )
    task = load_task("csv", tmp_path)
    assert task.meta.class_names == ("2", "9", "10") and task.meta.kind == "multiclass"
    assert task.index["label"].tolist() == [2, 1, 0, 2]
    assert task.index["group"].tolist() == ["p1", "p1", "img/c.png", "p2"]
    assert task.index["split"].tolist() == ["train", "train", "test", "test"]
    assert task.images.load("img/a.png").shape == (16, 16, 3)


def test_multilabel_and_explicit_csv_and_classes(tmp_path):
    _images(tmp_path / "data", ["x.jpg", "y.jpg"])
    (tmp_path / "data" / "table.csv").write_text("path,labels\nx.jpg,cat;dog\ny.jpg,dog\n")
    task = load_task("csv", tmp_path, csv="data/table.csv", classes="dog,cat,bird")
    assert task.meta.kind == "multilabel" and task.meta.class_names == ("dog", "cat", "bird")
    assert task.index["labels"].tolist() == [(0, 1), (0,)]
    assert load_task("csv", tmp_path / "data" / "table.csv").meta.class_names == ("cat", "dog")


def test_missing_files_listed_with_line_numbers(tmp_path):
    _images(tmp_path, ["a.png"])
    rows = "".join(f"gone{i}.png,x\n" for i in range(7))
    (tmp_path / "labels.csv").write_text(f"path,label\na.png,y\n{rows}")
    with pytest.raises(DataError) as err:
        load_task("csv", tmp_path)
    message = str(err.value)
    assert "labels.csv" in message and "7 row(s)" in message and "line 3: gone0.png" in message
    assert "(and 2 more)" in message and "Fix: correct the paths" in message


def test_unknown_labels_when_classes_given(tmp_path):
    _images(tmp_path, ["a.png", "b.png"])
    (tmp_path / "labels.csv").write_text("path,label\na.png,benign\nb.png,malignnat\n")
    with pytest.raises(DataError, match=r"line 3: b.png -> 'malignnat'.*Fix: add the label to `classes`"):
        load_task("csv", tmp_path, classes=["benign", "malignant"])


@pytest.mark.parametrize(
    "text, match",
    [("file,label\na.png,x\n", "needs 'path' and 'label'"), ("path,label\na.png,\n", "empty 'label': line 2: a.png"),
     ("path,label,split\na.png,x,holdout\n", "line 2: holdout")],
)
def test_malformed_tables(tmp_path, text, match):
    _images(tmp_path, ["a.png"])
    (tmp_path / "labels.csv").write_text(text)
    with pytest.raises(DataError, match=match):
        load_task("csv", tmp_path)

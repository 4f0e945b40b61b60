"""ImageCLEF 2019 concept detection in its release layout: tab-separated concept files + image folders.

    .venv/bin/python -m pytest tests/tasks/data/test_imageclef.py -q -p no:cacheprovider
"""

from __future__ import annotations

import pytest
from tests.tasks.data._layouts import write_image

from tasks.data import DataError, load_task

TRAIN = {  # image id -> concepts; counts: C01 x4, C02 x3, C03 x2, C04 x1
    "ROCO_1": "C01;C02", "ROCO_2": "C01;C03", "ROCO_3": "C01;C02;C04", "ROCO_4": "C01", "ROCO_5": "C02;C03",
}
VAL = {"ROCO_6": "C02", "ROCO_7": "C04", "ROCO_8": "C03;C01"}


def _write(root, train=TRAIN, val=VAL, header=False):
    for folder, rows in (("train", train), ("val", val)):
        for image_id in rows:
            write_image(root / folder / f"{image_id}.jpg")
    for split, rows in (("train", train), ("val", val)):
        text = ("image_id\tconcepts\n" if header else "") + "".join(f"{i}\t{c}\n" for i, c in rows.items())
        (root / f"ImageCLEFmedical_Caption_2019_concepts_{split}.csv").write_text(text + "\n")
    (root / "concepts.csv").write_text("C01\tX-Ray Computed Tomography\nC02\tAbdomen\n")
    return root


def test_multilabel_index_with_names_and_splits(tmp_path):
    task = load_task("imageclef-concepts", _write(tmp_path, header=True))
    assert task.meta.kind == "multilabel" and "label" not in task.index.columns
    assert task.meta.class_names == ("C01 (X-Ray Computed Tomography)", "C02 (Abdomen)", "C03", "C04")
    rows = task.index.set_index("item")
    assert rows.loc["train/ROCO_3.jpg", "labels"] == (0, 1, 3)
    assert rows.loc["val/ROCO_8.jpg", "labels"] == (0, 2)
    # no test CSV: the validation set is what papers test on
    assert set(rows["split"]) == {"train", "test"} and rows.loc["val/ROCO_6.jpg", "split"] == "test"


def test_top_k_and_min_count_filters_drop_unlabelled_images(tmp_path):
    _write(tmp_path)
    with pytest.warns(UserWarning, match=r"dropped 1 image\(s\).*top_k=2\): 1 test"):
        task = load_task("imageclef-concepts", tmp_path, top_k=2)  # keeps C01, C02
    assert task.meta.class_names[0].startswith("C01") and task.meta.num_classes == 2
    assert "train/ROCO_5.jpg" in set(task.index["item"]) and "val/ROCO_7.jpg" not in set(task.index["item"])
    assert task.meta.name == "imageclef-concepts:top2"
    with pytest.warns(UserWarning, match="dropped 1 image"):
        task = load_task("imageclef-concepts", tmp_path, min_count=2)  # C04 has one training image
    assert [c.split()[0] for c in task.meta.class_names] == ["C01", "C02", "C03"]


def test_explicit_file_names_and_test_csv(tmp_path):
    _write(tmp_path)
    for path in tmp_path.glob("*concepts_*.csv"):
        path.rename(tmp_path / path.name.replace("ImageCLEFmedical_Caption_2019_concepts_", "my_"))
    write_image(tmp_path / "test" / "ROCO_9.jpg")
    (tmp_path / "my_test.csv").write_text("ROCO_9.jpg\tC01\n")
    task = load_task("imageclef-concepts", tmp_path, train_csv="my_train.csv", val_csv="my_val.csv", test_csv="my_test.csv")
    assert task.index.groupby("split").size().to_dict() == {"train": 5, "val": 3, "test": 1}


@pytest.mark.parametrize(
    "line, match",
    [("ROCO_2\tC01;banana", "line 2: not a CUI: 'banana'"), ("ROCO_2", "line 2: no concepts"),
     ("ROCO_2\tC01\textra", "malformed"), ("ROCO_1\tC01", "line 2: image 'ROCO_1' is listed twice")],
)
def test_malformed_rows_name_file_and_line(tmp_path, line, match):
    _write(tmp_path)
    path = tmp_path / "ImageCLEFmedical_Caption_2019_concepts_train.csv"
    path.write_text(f"ROCO_1\tC01\n{line}\n")
    with pytest.raises(DataError, match=match) as err:
        load_task("imageclef-concepts", tmp_path)
    assert path.name in str(err.value)


def test_missing_image_and_missing_csv(tmp_path):
    _write(tmp_path)
    (tmp_path / "val" / "ROCO_7.jpg").unlink()
    with pytest.raises(DataError, match="line 2: ROCO_7.jpg.*extract the complete val images"):
        load_task("imageclef-concepts", tmp_path)
    (tmp_path / "ImageCLEFmedical_Caption_2019_concepts_val.csv").unlink()
    with pytest.raises(DataError, match=r"no \*concept\*val\*.csv.*val_csv="):
        load_task("imageclef-concepts", tmp_path)

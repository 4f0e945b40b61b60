"""Kermany chest X-ray in the Kaggle `chest_xray` layout, with grayscale JPEGs and patient groups.

    .venv/bin/python -m pytest tests/tasks/data/test_chestxray.py -q -p no:cacheprovider
"""

from __future__ import annotations

import numpy as np
import pytest
from tests.tasks.data._layouts import write_image

from tasks.data import DataError, assign_folds, load_task
from tasks.data.adapters.chestxray import patient_group

FILES = {
    ("train", "NORMAL"): ["IM-0115-0001.jpeg", "IM-0115-0002.jpeg", "NORMAL2-IM-0115-0003.jpeg", "IM-0117-0001.jpeg"],
    ("train", "PNEUMONIA"): ["person1_bacteria_1.jpeg", "person1_bacteria_2.jpeg", "person1_virus_6.jpeg",
                             "person115_bacteria_546.jpeg", "person22_virus_55.jpeg"],
    ("val", "NORMAL"): ["NORMAL2-IM-1427-0001.jpeg"],
    ("val", "PNEUMONIA"): ["person1946_bacteria_4874.jpeg"],
    ("test", "NORMAL"): ["IM-0001-0001.jpeg", "NORMAL2-IM-0086-0001.jpeg"],
    ("test", "PNEUMONIA"): ["person100_bacteria_475.jpeg", "person147_virus_297.jpeg"],
}


def _write_kaggle(root):
    base = root / "chest_xray"
    for (split, cls), names in FILES.items():
        for name in names:
            write_image(base / split / cls / name, shade=60 if cls == "NORMAL" else 200, mode="L")
    (base / "__MACOSX").mkdir()  # the Kaggle zip ships these next to the split folders
    (base / "chest_xray" / "train").mkdir(parents=True)
    return base


@pytest.mark.parametrize("from_parent", [True, False])
def test_kaggle_layout_labels_splits_and_groups(tmp_path, from_parent):
    base = _write_kaggle(tmp_path)
    task = load_task("chest-xray", tmp_path if from_parent else base)
    index = task.index.set_index("item")
    assert task.meta.class_names == ("NORMAL", "PNEUMONIA") and task.meta.kind == "binary"
    assert len(index) == sum(len(v) for v in FILES.values())
    for (split, cls), names in FILES.items():
        for name in names:
            row = index.loc[f"{split}/{cls}/{name}"]
            assert row["split"] == split and task.meta.class_names[row["label"]] == cls
    assert index.loc["train/PNEUMONIA/person1_bacteria_1.jpeg", "group"] == "pneumonia:1"
    assert index.loc["train/PNEUMONIA/person1_virus_6.jpeg", "group"] == "pneumonia:1"
    # one NORMAL patient across IM- and NORMAL2-IM- names; never merged with PNEUMONIA person115
    assert index.loc["train/NORMAL/NORMAL2-IM-0115-0003.jpeg", "group"] == "normal:115"
    assert index.loc["train/NORMAL/IM-0115-0001.jpeg", "group"] == "normal:115"
    assert index.loc["train/PNEUMONIA/person115_bacteria_546.jpeg", "group"] == "pneumonia:115"
    # grayscale JPEG -> 3 equal channels, not a black image
    pixels = task.images.load("test/NORMAL/IM-0001-0001.jpeg")
    assert pixels.shape == (16, 16, 3) and (pixels[..., 0] == pixels[..., 2]).all() and abs(pixels.mean() - 60) < 3


def test_patients_never_straddle_folds(tmp_path):
    base = tmp_path / "chest_xray"
    for p in range(12):
        for n in range(3):
            write_image(base / "train" / "PNEUMONIA" / f"person{p}_bacteria_{n}.jpeg", mode="L")
            write_image(base / "train" / "NORMAL" / f"IM-{p:04d}-{n:04d}.jpeg", mode="L")
    write_image(base / "test" / "NORMAL" / "IM-9999-0001.jpeg", mode="L")
    write_image(base / "test" / "PNEUMONIA" / "person999_virus_1.jpeg", mode="L")
    task = load_task("chest-xray", base)
    folds = assign_folds(task, k=3, seed=0)
    per_group = task.index.assign(fold=folds).groupby("group")["fold"].nunique()
    assert (per_group == 1).all() and len(per_group) == 26


def test_patient_group_patterns():
    assert patient_group("person1946_bacteria_4874.jpeg") == ("pneumonia:1946", "PNEUMONIA")
    assert patient_group("NORMAL2-IM-1427-0001.jpeg") == ("normal:1427", "NORMAL")
    assert patient_group("BACTERIA-7422-0001.jpeg") == ("pneumonia:7422", "PNEUMONIA")  # Mendeley release
    assert patient_group("scan.jpeg") is None


def test_unparsable_and_contradicting_names_warn(tmp_path):
    base = tmp_path / "chest_xray"
    write_image(base / "train" / "NORMAL" / "scan.jpeg", mode="L")
    write_image(base / "train" / "PNEUMONIA" / "IM-0001-0001.jpeg", mode="L")
    write_image(base / "test" / "NORMAL" / "IM-0002-0001.jpeg", mode="L")
    write_image(base / "test" / "PNEUMONIA" / "person3_virus_1.jpeg", mode="L")
    with pytest.warns(UserWarning) as record:
        task = load_task("chest-xray", base)
    messages = " ".join(str(w.message) for w in record)
    assert "scan.jpeg" in messages and "no patient id" in messages
    assert "IM-0001-0001.jpeg" in messages and "contradicts" in messages
    assert np.count_nonzero(task.index["group"].str.startswith("file:")) == 1


def test_missing_class_folder_in_a_split(tmp_path):
    base = tmp_path / "chest_xray"
    write_image(base / "train" / "NORMAL" / "IM-0001-0001.jpeg", mode="L")
    write_image(base / "test" / "NORMAL" / "IM-0002-0001.jpeg", mode="L")
    write_image(base / "test" / "PNEUMONIA" / "person3_virus_1.jpeg", mode="L")
    with pytest.raises(DataError, match=r"train holds folders \['NORMAL'\].*re-extract"):
        load_task("chest-xray", tmp_path)

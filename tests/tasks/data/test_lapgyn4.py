"""LapGyn4 v1.2: four parts of class folders, namespaced class names, part selection.

    .venv/bin/python -m pytest tests/tasks/data/test_lapgyn4.py -q -p no:cacheprovider
"""

from __future__ import annotations

import pytest
from tests.tasks.data._layouts import class_counts, write_class_folders

from tasks.data import DataError, load_task
from tasks.data.adapters.lapgyn4 import PARTS

CLASSES = {  # a few real class names per part; "Suturing" sits in two parts on purpose
    "Actions_on_Anatomy": {"Suturing": 2, "Cutting": 3},
    "Anatomical_Structures": {"Colon": 2, "Ovary": 2, "Uterus": 1},
    "Instrument_Count": {"0": 2, "1": 2, "2": 1, "3": 1},
    "Surgical_Actions": {"Suturing": 1, "Grasping": 2},
}


@pytest.fixture
def release(tmp_path):
    base = tmp_path / "LapGyn4_v1.2"
    for part, counts in CLASSES.items():
        write_class_folders(base / part, counts)
    return tmp_path


def test_all_parts_with_namespaced_classes(release):
    task = load_task("lapgyn4", release)
    expected = {f"{part}/{cls}": n for part, counts in CLASSES.items() for cls, n in counts.items()}
    assert class_counts(task) == expected
    rows = task.index
    assert all(item.startswith(task.meta.class_names[label] + "/") for item, label in zip(rows["item"], rows["label"]))
    assert task.images.load(rows["item"].iloc[0]).shape == (16, 16, 3)


def test_parts_option(release):
    task = load_task("lapgyn4", release / "LapGyn4_v1.2", parts="Instrument_Count, Surgical_Actions")
    assert task.meta.class_names == ("Instrument_Count/0", "Instrument_Count/1", "Instrument_Count/2",
                                     "Instrument_Count/3", "Surgical_Actions/Grasping", "Surgical_Actions/Suturing")
    assert load_task("lapgyn4", release, parts=["Anatomical_Structures"]).meta.num_classes == 3
    with pytest.raises(DataError, match="unknown part.*Instruments.*Valid parts: " + ", ".join(PARTS)):
        load_task("lapgyn4", release, parts="Instruments")


def test_missing_part_and_empty_class_folder(release):
    base = release / "LapGyn4_v1.2"
    (base / "Surgical_Actions" / "Empty").mkdir()
    with pytest.raises(DataError, match="Empty holds no image files"):
        load_task("lapgyn4", release, parts="Surgical_Actions")
    for path in (base / "Instrument_Count").rglob("*.jpg"):
        path.unlink()
    for folder in sorted((base / "Instrument_Count").iterdir()):
        folder.rmdir()
    (base / "Instrument_Count").rmdir()
    with pytest.raises(DataError, match="Instrument_Count missing.*LapGyn4_v1.2"):
        load_task("lapgyn4", release)

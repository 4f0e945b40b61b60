"""`lapgyn4+cataract101`: the union of a tiny generated LapGyn4 layout and a tiny Cataract-101 layout.

    .venv/bin/python -m pytest tests/tasks/data/test_medical_source.py -q -p no:cacheprovider
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

av = pytest.importorskip("av")

from tasks.data import DataError, list_datasets, load_task  # noqa: E402
from tasks.data.adapters.medical_source import CompositeStore, union_tasks  # noqa: E402
from tasks.data.images import ArrayStore  # noqa: E402
from tasks.data.index import Task, TaskMeta, make_index  # noqa: E402
from tasks.data.splits import assign_folds  # noqa: E402
from tests.tasks.data._layouts import LAPGYN4, write_cataract101, write_lapgyn4  # noqa: E402

@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("medical_source")
    write_lapgyn4(root / "LapGyn4_v1.2")
    write_cataract101(root / "cataract-101")
    return root


def test_registered():
    assert "lapgyn4+cataract101" in list_datasets()


def test_composite_store_dispatches_by_prefix():
    store = CompositeStore({"a": ArrayStore(np.zeros((2, 4, 4), np.uint8)),
                            "b": ArrayStore(np.full((1, 4, 4), 7, np.uint8))})
    assert store.load("b:0").max() == 7 and store.load("a:1").max() == 0
    with pytest.raises(DataError, match=r"prefixes \['a', 'b'\]"):
        store.load("c:0")
    with pytest.raises(DataError, match="keep their source prefix"):
        store.load("0")
    assert "a: 2 arrays" in store.describe()


def test_union_namespaces_classes_items_groups():
    one = Task(TaskMeta("one", ("x", "y"), "binary"),
               make_index([0, 1, 2], [0, 1, 1], groups=["p", "p", "q"]),
               ArrayStore(np.arange(3, dtype=np.uint8)[:, None, None].repeat(2, 1).repeat(2, 2)))
    two = Task(TaskMeta("two", ("x", "z", "w"), "multiclass"),
               make_index([0, 1], [2, 0], groups=["p", "r"], splits=["train", "test"]),
               ArrayStore(np.full((2, 2, 2), 50, np.uint8)))
    union = union_tasks({"one": one, "two": two}, "both")
    assert union.meta.class_names == ("one:x", "one:y", "two:x", "two:z", "two:w")
    assert union.index["label"].tolist() == [0, 1, 1, 4, 2]
    assert union.index["group"].tolist() == ["one:p", "one:p", "one:q", "two:p", "two:r"]
    assert union.index["split"].tolist() == [""] * 5  # `one` has no official split, so neither has the union
    assert union.images.load(union.index["item"][2]).max() == 2
    assert union.images.load(union.index["item"][3]).max() == 50


def test_lapgyn4_plus_cataract101(data_root, tmp_path):
    levels = write_lapgyn4(tmp_path / "unused")  # same grey levels as the fixture's layout
    task = load_task("lapgyn4+cataract101", data_root, every_n=5, cache_dir=tmp_path / "frames")
    lap_names = {f"lapgyn4:{p}/{c}" for p, cs in LAPGYN4.items() for c in cs}
    c101_names = {"cataract101:Incision", "cataract101:Rhexis", "cataract101:Polishing"}
    assert set(task.meta.class_names) == lap_names | c101_names
    assert task.meta.num_classes == len(lap_names) + 3
    index = task.index
    lap = index[index["item"].str.startswith("lapgyn4:")]
    c101 = index[index["item"].str.startswith("cataract101:")]
    assert len(lap) == 2 * len(lap_names) and len(lap) + len(c101) == len(index)
    for item, label in zip(lap["item"], lap["label"]):
        rel = item.split(":", 1)[1]
        assert task.meta.class_names[label] == "lapgyn4:" + rel.rsplit("/", 1)[0]
        assert abs(float(task.images.load(item).mean()) - levels[rel]) < 3
    # Video 101 (every 5th of 20 frames): 0, 5 Incision; 10, 15 Rhexis. Video 102: 0 Incision; 5.. Polishing.
    got = {(g, Path(i).stem, task.meta.class_names[l]) for i, g, l in zip(c101["item"], c101["group"], c101["label"])}
    assert got == {
        ("cataract101:101", "000000", "cataract101:Incision"), ("cataract101:101", "000005", "cataract101:Incision"),
        ("cataract101:101", "000010", "cataract101:Rhexis"), ("cataract101:101", "000015", "cataract101:Rhexis"),
        ("cataract101:102", "000000", "cataract101:Incision"), ("cataract101:102", "000005", "cataract101:Polishing"),
        ("cataract101:102", "000010", "cataract101:Polishing"), ("cataract101:102", "000015", "cataract101:Polishing"),
    }
    assert abs(float(task.images.load(c101["item"].iloc[0]).mean()) - 200) < 3
    # A video is one group, so a grouped k-fold keeps all its frames in one fold.
    folds = assign_folds(task, 2, seed=0)
    for video in ("cataract101:101", "cataract101:102"):
        assert len(set(folds[(index["group"] == video).to_numpy()])) == 1


def test_explicit_roots_and_lapgyn4_options(data_root, tmp_path):
    task = load_task("lapgyn4+cataract101", None, lapgyn4_root=data_root / "LapGyn4_v1.2",
                     cataract101_root=data_root / "cataract-101", parts=["Instrument_Count"],
                     every_n=10, cache_dir=tmp_path / "frames")
    lap = [c for c in task.meta.class_names if c.startswith("lapgyn4:")]
    assert lap == ["lapgyn4:Instrument_Count/0", "lapgyn4:Instrument_Count/1"]
    with pytest.raises(DataError, match=r"takes no option 'colour'\. Valid options: .*parts, fps, every_n"):
        load_task("lapgyn4+cataract101", data_root, colour="red")


def test_missing_roots_are_explained(tmp_path):
    with pytest.raises(DataError, match="needs --data-root"):
        load_task("lapgyn4+cataract101", None)
    with pytest.raises(DataError, match=r"LapGyn4 folder .*LapGyn4_v1\.2 not found; .*lapgyn4_root="):
        load_task("lapgyn4+cataract101", tmp_path)

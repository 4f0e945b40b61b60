"""`union`: several datasets as one source, classes prefixed by member, groups kept apart.

    .venv/bin/python -m pytest tests/tasks/data/test_union.py -q -p no:cacheprovider
"""

from __future__ import annotations

import numpy as np
import pytest

from tasks.data import DataError, list_datasets, load_task, make_fold
from tests.tasks.data._layouts import write_class_folders

MEMBERS = [{"dataset": "gen-general", "options": {"per_class": 3}},
           {"dataset": "gen-medical", "options": {"per_class": 5}, "name": "med"}]


def test_registered():
    assert "union" in list_datasets()


def test_members_become_one_task_with_prefixed_classes_items_and_groups():
    general = load_task("gen-general", None, per_class=3)
    medical = load_task("gen-medical", None, per_class=5)
    task = load_task("union", None, members=MEMBERS)
    assert task.meta.class_names == tuple(f"gen-general:{c}" for c in general.meta.class_names) + tuple(
        f"med:{c}" for c in medical.meta.class_names)
    assert task.meta.kind == "multiclass" and len(task.index) == len(general.index) + len(medical.index)
    index = task.index
    n = len(general.index)
    # The general member's rows first, labels as they were; the medical member's shifted past them.
    np.testing.assert_array_equal(index["label"][:n], general.labels)
    np.testing.assert_array_equal(index["label"][n:], medical.labels + general.meta.num_classes)
    assert index["item"][:n].tolist() == [f"gen-general:{i}" for i in general.index["item"]]
    assert index["group"][n:].tolist() == [f"med:{g}" for g in medical.index["group"]]
    assert not set(index["group"][:n]) & set(index["group"][n:])  # no group shared across members
    for row in (0, n - 1, n, len(index) - 1):  # each item loads its own member's image
        member, at = (general, row) if row < n else (medical, row - n)
        np.testing.assert_array_equal(task.images.load(index["item"][row]), member.images.load(member.index["item"][at]))
    fold = make_fold(task, fold=0, k=2, seed=0)
    assert len(fold.test) and len(fold.train)


def test_members_on_disk_are_found_under_the_root(tmp_path):
    write_class_folders(tmp_path / "left", {"a": 3, "b": 3})
    write_class_folders(tmp_path / "right", {"a": 2, "c": 4})
    task = load_task("union", tmp_path, members=[
        {"dataset": "class-folders", "path": "left", "name": "left"},
        {"dataset": "class-folders", "path": str(tmp_path / "right"), "name": "right"}])  # absolute: as is
    assert task.meta.class_names == ("left:a", "left:b", "right:a", "right:c")  # same class name, two classes
    assert np.bincount(task.labels).tolist() == [3, 3, 2, 4]


@pytest.mark.parametrize("members, message", [
    ([], "non-empty list"),
    ({"dataset": "gen-general"}, "non-empty list"),
    ([{"path": "x"}], "at least `dataset: NAME`"),
    ([{"dataset": "gen-general", "colour": 1}], r"unknown key\(s\) colour\. Valid keys: dataset, path, options, name"),
    ([{"dataset": "nope"}], "unknown dataset 'nope'. Valid datasets: .*gen-general"),
    ([{"dataset": "gen-general"}, {"dataset": "gen-general"}], "name 'gen-general' is taken by an earlier member"),
    ([{"dataset": "gen-general", "name": "a:b"}], "may not contain ':'"),
    ([{"dataset": "gen-general", "options": {"colour": 1}}], "takes no option 'colour'"),
    ([{"dataset": "class-folders", "path": "left"}], "relative to the data root, but there is none"),
    ([{"dataset": "union"}], "cannot hold a union"),
])
def test_bad_members_are_explained(members, message):
    with pytest.raises(DataError, match=message):
        load_task("union", None, members=members)


def test_lapgyn4_plus_cataract101_is_built_by_the_union_code():
    from tasks.data.adapters import medical_source, union

    assert medical_source.union_tasks is union.union_tasks and medical_source.CompositeStore is union.CompositeStore

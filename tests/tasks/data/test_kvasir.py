"""Kvasir v1/v2 and Medico 2018 in their release layouts (tiny generated JPEGs).

    .venv/bin/python -m pytest tests/tasks/data/test_kvasir.py -q -p no:cacheprovider
"""

from __future__ import annotations

import pytest
from tests.tasks.data._layouts import class_counts, write_class_folders

from tasks.data import DataError, assign_folds, load_task
from tasks.data.adapters import kvasir


@pytest.mark.parametrize("name", ["kvasir-v1", "kvasir-v2"])
@pytest.mark.parametrize("from_parent", [False, True])
def test_kvasir_release_folder_or_its_parent(tmp_path, name, from_parent):
    release = tmp_path / kvasir.FOLDERS[name]
    counts = {cls: 3 + i for i, cls in enumerate(kvasir.KVASIR_CLASSES)}
    write_class_folders(release, counts)
    task = load_task(name, tmp_path if from_parent else release)
    assert task.meta.class_names == kvasir.KVASIR_CLASSES
    assert task.meta.kind == "multiclass"
    assert class_counts(task) == counts
    assert not task.has_official_split
    # the pixels of every row are those of its class folder (classes are painted 10*i + 5)
    for row in task.index.sample(6, random_state=0).itertuples():
        assert row.item.startswith(task.meta.class_names[row.label] + "/")
        assert abs(int(task.images.load(row.item).mean()) - (10 * row.label + 5)) <= 2
    folds = assign_folds(task, k=3, seed=0)  # no official split: stratified k-fold covers every class
    for f in range(3):
        assert set(task.labels[folds == f]) == set(range(8))


def test_medico2018_has_16_classes_and_published_counts(tmp_path):
    release = tmp_path / "Medico_2018_development_set"
    write_class_folders(release, {cls: 2 for cls in kvasir.MEDICO2018_CLASSES})
    task = load_task("medico2018", tmp_path)
    assert task.meta.num_classes == 16 == kvasir.CARDS["medico2018"].published.classes
    assert len(task.index) == 32
    assert {n: c.published.total for n, c in kvasir.CARDS.items()} == {"kvasir-v1": 4000, "kvasir-v2": 8000, "medico2018": 5293}
    assert kvasir.CARDS["kvasir-v2"].published.per_class * 8 == kvasir.CARDS["kvasir-v2"].published.total


def test_missing_class_folder_is_reported(tmp_path):
    write_class_folders(tmp_path, {cls: 1 for cls in kvasir.KVASIR_CLASSES[:-1]})
    with pytest.raises(DataError, match="lacks class folder.*ulcerative-colitis.*re-extract"):
        load_task("kvasir-v2", tmp_path)


def test_extra_folder_is_not_a_class(tmp_path):
    write_class_folders(tmp_path, {cls: 1 for cls in kvasir.KVASIR_CLASSES} | {"my-extra": 1})
    with pytest.raises(DataError, match="my-extra.*not classes.*move them out"):
        load_task("kvasir-v2", tmp_path)


def test_medico_classes_do_not_pass_as_kvasir(tmp_path):
    write_class_folders(tmp_path, {cls: 1 for cls in kvasir.MEDICO2018_CLASSES})
    with pytest.raises(DataError, match="blurry-nothing"):
        load_task("kvasir-v2", tmp_path)


def test_wrong_root_lists_what_it_found(tmp_path):
    (tmp_path / "something-else").mkdir()
    with pytest.raises(DataError, match="cannot find the release.*something-else.*--data-root"):
        load_task("kvasir-v1", tmp_path)

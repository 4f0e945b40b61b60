"""Every registered dataset adapter indexes a tiny copy of its publisher's layout, and has a full card.

    .venv/bin/python -m pytest tests/tasks/data/test_every_adapter.py -q
"""

from __future__ import annotations

import numpy as np
import pytest

from tasks.data import dataset_card, list_datasets, load_task, make_fold
from tests.tasks.data._layouts import LAYOUTS


def test_every_registered_adapter_has_a_layout_here():
    assert sorted(LAYOUTS) == list_datasets(), "add a builder to tests/tasks/data/_layouts.py LAYOUTS"


@pytest.mark.parametrize("name", list_datasets())
def test_adapter_indexes_its_layout(name, tmp_path):
    root, options = LAYOUTS[name](tmp_path)
    task = load_task(name, root, **options)
    card = dataset_card(name)
    assert card.summary and card.layout and card.split
    assert len(task.index) >= 4 and task.meta.num_classes >= 2
    image = task.images.load(task.index["item"].iloc[0])
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    if task.has_official_split:
        fold = make_fold(task, fold=-1, k=0, seed=0)
    else:
        fold = make_fold(task, fold=0, k=2, seed=0)
    rows = np.concatenate([fold.train, fold.val, fold.test])
    assert len(fold.test) and len(np.unique(rows)) == len(rows)  # disjoint parts


@pytest.mark.parametrize("name", list_datasets())
def test_unknown_option_is_refused_with_the_valid_ones(name, tmp_path):
    from tasks.data import DataError, option_defaults

    with pytest.raises(DataError) as err:
        load_task(name, tmp_path, no_such_option=1)
    assert "no_such_option" in str(err.value)
    for option in option_defaults(name):
        assert option in str(err.value)

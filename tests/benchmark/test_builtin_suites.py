"""Every built-in suite file expands, names registered things only, and is documented in the README
(the dataset table, generated from the cards, in docs/data.md).

    .venv/bin/python -m pytest tests/benchmark/test_builtin_suites.py -q
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from benchmark.cli import SUITES_DIR
from benchmark.plan.suite import load_suite
from tests.backbones.hub_cache import hub_cache, publish  # noqa: F401 - hub_cache is a fixture, used by name

REPO = Path(__file__).resolve().parents[2]
SUITES = sorted(p.stem for p in SUITES_DIR.glob("*.yaml"))


@pytest.mark.parametrize("name", SUITES)
def test_builtin_suite_expands(name, hub_cache):
    # Hub models (foundation.yaml) are looked up in the HF cache when a suite loads: tiny stand-ins under the same ids.
    raw = yaml.safe_load((SUITES_DIR / f"{name}.yaml").read_text())
    for backbone in raw.get("backbones", []):
        if str(backbone).startswith("hub:"):
            publish(hub_cache, backbone[len("hub:"):], "0" * 40)
    suite = load_suite(SUITES_DIR / f"{name}.yaml")
    assert suite.name == name and suite.finetune_cells
    hashes = [c.hash for c in suite.cells]
    assert len(hashes) == len(set(hashes))  # no cell twice
    pretrain = {c.hash for c in suite.cells if c.stage == "pretrain"}
    for cell in suite.finetune_cells:  # every `cell:` source is a pretraining cell of the same suite
        assert not cell.weights.startswith("cell:") or cell.weights[len("cell:"):] in pretrain


@pytest.mark.parametrize("name", SUITES)
def test_builtin_suite_is_in_the_readme(name):
    assert f"`{name}.yaml`" in (REPO / "README.md").read_text()


def test_docs_dataset_table_is_generated_from_the_cards():
    # The table lives in docs/data.md (the README links to it), so the guide stays short.
    from benchmark.plan.catalogue import dataset_table

    page = (REPO / "docs" / "data.md").read_text()
    assert dataset_table() in page, "docs/data.md's dataset table is stale: paste the output of `medtl list --datasets`"


def test_imagenet_weights_with_a_small_input_stem_fail_before_training(tmp_path):
    # ImageNet weights were learnt through the 7x7 stride-2 stem; a 3x3 stem cannot take them.
    from benchmark.plan.suite import SuiteError
    from tests.benchmark.suites import write_suite

    path = write_suite(tmp_path, backbones=["resnet18_small"], sources={"imagenet": {"weights": "imagenet"}})
    with pytest.raises(SuiteError) as error:
        load_suite(path)
    message = str(error.value)
    assert "resnet18_small" in message and "sources.imagenet" in message
    assert "7x7" in message and "image_size: native" in message  # the reason and the fix

"""The suite file read once into one schema; counts as fractions; the `scratch` source; a binary target's positive class.

    PYTHONPATH=. .venv/bin/python -m pytest tests/benchmark/test_plan_suite.py -q
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from benchmark.plan import checks
from benchmark.plan.schema import SuiteModel, Throughput
from benchmark.plan.spec import RunSpec
from benchmark.plan.suite import SuiteError, load_suite
from tests.benchmark.suites import write_suite
from tests.benchmark.test_identity import REFERENCE

SCRATCH_ONLY = {"none": {"weights": "scratch"}}


def test_the_suite_object_is_the_validated_model_with_its_defaults(tmp_path):
    suite = load_suite(write_suite(tmp_path, sources=SCRATCH_ONLY, throughput=None))
    assert isinstance(suite.model, SuiteModel) and suite.name == "tiny"
    # `throughput:` left empty: the model's defaults, written once (in benchmark.plan.schema.Throughput)
    assert suite.throughput == Throughput().model_dump() == {
        "batch_size": 32, "warmup": 2, "batches": 5, "memory_format": "auto", "pipeline": "auto", "compile": False}
    assert (suite.num_workers, suite.save_checkpoints, suite.hparams_from, suite.tune_budget) == ("auto", False, "", 0)
    given = load_suite(write_suite(tmp_path, sources=SCRATCH_ONLY, throughput={"batch_size": 8}, num_workers=2))
    assert given.throughput["batch_size"] == 8 and given.throughput["warmup"] == 2 and given.num_workers == 2
    with pytest.raises(Exception):  # the validated suite cannot be changed after its cells were expanded from it
        suite.model.folds = 5


def test_hyperparameter_names_are_checked_once(tmp_path, monkeypatch):
    calls = []
    original = checks.check_hparam_names
    monkeypatch.setattr(checks, "check_hparam_names", lambda *a: calls.append(a) or original(*a))
    load_suite(write_suite(tmp_path, sources=SCRATCH_ONLY))
    assert len(calls) == 1


def _fractions(tmp_path, fractions, **more):
    return load_suite(write_suite(tmp_path, sources=SCRATCH_ONLY, fractions=fractions, **more)).finetune_cells


def test_a_count_of_images_is_a_fraction_axis_value_and_shares_keep_their_hashes(tmp_path):
    cells = _fractions(tmp_path, [657, 0.5, 1.0])
    counts = [c for c in cells if c.is_count]
    assert len(counts) == 2 and {c.fraction for c in counts} == {657} and all(type(c.fraction) is int for c in counts)
    assert counts[0].label.endswith(" n657") and "frac" not in counts[0].label
    shares = {c.hash for c in cells if not c.is_count}
    assert shares == {c.hash for c in _fractions(tmp_path, [0.5, 1.0])}  # adding a count leaves the others alone
    assert len({c.hash for c in cells}) == len(cells)
    # `1` (an int) is all rows, as 1.0 always was: same cells.
    assert [c.hash for c in _fractions(tmp_path, [1])] == [c.hash for c in _fractions(tmp_path, [1.0])]
    # Floats hash as before the count was accepted (pinned with the code of main before this change).
    assert replace(REFERENCE, fraction=0.5).hash == "23503e8888f05698"
    assert replace(REFERENCE, fraction=1.0).hash == "302de5615def2fc2"
    assert replace(REFERENCE, fraction=657).hash not in ("302de5615def2fc2", replace(REFERENCE, fraction=657.0).hash)


@pytest.mark.parametrize("fractions, fragments", [
    ([657.0], ["fractions[0]", "write 657"]),
    ([657.5], ["fractions[0]", "less than or equal to 1", "whole number > 1", "(0, 1]"]),
    ([0], ["fractions[0]", "greater than 0"]),
    ([-3], ["fractions[0]", "greater than 0"]),
    ([1, 1.0], ["fractions", "1.0 given more than once"]),
    ([True], ["fractions[0]"]),
])
def test_bad_fractions_say_what_a_fraction_and_a_count_are(tmp_path, fractions, fragments):
    with pytest.raises(SuiteError) as error:
        _fractions(tmp_path, fractions)
    message = str(error.value)
    assert all(f in message for f in [*fragments, "Fix:"]), message


def test_scratch_names_the_no_weights_source_and_none_keeps_its_cells(tmp_path):
    old = load_suite(write_suite(tmp_path, name="old", sources=SCRATCH_ONLY)).cells
    new = load_suite(write_suite(tmp_path, name="old", sources={"scratch": {"weights": "scratch"}})).cells
    assert [c.hash for c in new] == [c.hash for c in old]
    assert {c.source for c in new} == {"scratch"} and {c.source for c in old} == {"none"}
    # An ensemble over sources joins their names; the joined name hashes as before too.
    both = {"gen": {"weights": "scratch"}}
    ens = dict(strategies=["full", "ensemble-sources"])
    old = load_suite(write_suite(tmp_path, name="e", sources={**SCRATCH_ONLY, **both}, **ens)).cells
    new = load_suite(write_suite(tmp_path, name="e", sources={"scratch": {"weights": "scratch"}, **both}, **ens)).cells
    assert [c.hash for c in new] == [c.hash for c in old] and new[-1].source == "gen+scratch"


@pytest.mark.parametrize("sources, fragment", [
    ({"none": {"weights": "scratch"}, "scratch": {"weights": "scratch"}}, "'none' and 'scratch' are one source"),
    ({"scratch": {"weights": "imagenet"}}, "sources.scratch: the name 'scratch' means no pretrained weights"),
])
def test_scratch_cannot_be_given_twice_or_with_weights(tmp_path, sources, fragment):
    with pytest.raises(SuiteError, match=fragment):
        load_suite(write_suite(tmp_path, sources=sources))


def test_a_positive_class_is_carried_to_the_cells_and_absent_it_changes_no_hash(tmp_path):
    plain = load_suite(write_suite(tmp_path, sources=SCRATCH_ONLY)).cells
    target = {"dataset": "gen-target", "options": {"size": 32}, "positive_class": "lesion"}
    named = load_suite(write_suite(tmp_path, sources=SCRATCH_ONLY, target=target)).cells
    assert all(c.positive_class == "" for c in plain) and all(c.positive_class == "lesion" for c in named)
    assert all(a.hash != b.hash for a, b in zip(plain, named))
    assert replace(REFERENCE, positive_class="").hash == "302de5615def2fc2"
    with pytest.raises(SuiteError, match=r"target.positive_class.*at least 1 character.*Fix: write the name of one class"):
        load_suite(write_suite(tmp_path, sources=SCRATCH_ONLY, target={**target, "positive_class": ""}))


def test_positive_class_error_names_the_classes_and_wants_a_binary_target():
    assert checks.positive_class_error("pneumonia", ["normal", "pneumonia"]) is None
    assert "not a class of the target (it has normal, pneumonia)" in checks.positive_class_error("Pneumonia", ["normal", "pneumonia"])
    assert "a target with 3 classes" in checks.positive_class_error("b", ["a", "b", "c"])


def test_spec_without_the_new_fields_hashes_as_pinned():
    # The fields added here (positive_class, variant) at their defaults leave the identity untouched.
    assert set(REFERENCE.identity()) == set(RunSpec.__dataclass_fields__) - {"members", "extra_train", "external", "positive_class", "variant"}

"""Every environment variable medtl reads is in one table; a bad value is a SettingError naming it, never a crash.

    .venv/bin/python -m pytest tests/tracking/test_settings.py -q -p no:cacheprovider
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tracking import settings
from tracking.settings import SettingError, check_all, read

REPO = Path(__file__).resolve().parents[2]

# One bad value per registered variable, and the words its message must hold (what is valid).
BAD = {
    "MEDTL_DATA": ("{file}", "is a file, not a folder"),
    "MEDTL_CACHE": ("{file}", "is a file, not a folder"),
    "MEDTL_FIXTURES": ("{file}", "is a file, not a folder"),
    "MEDTL_TENSOR_STORE_GB": ("abc", "not a number"),
    "MEDTL_DOWNLOAD_TIMEOUT": ("0", "must be greater than 0"),
    "MEDTL_LEASE_SECONDS": ("abc", "not a number"),
    "MEDTL_OPTUNA_STORAGE": ("postgres://optuna:hunter2@db/optuna", "unknown database dialect 'postgres'"),
    "MEDTL_SERVER_DB": ("sqlite:///{missing}/mlflow.db", "does not exist"),
    "MLFLOW_TRACKING_URI": ("htp://127.0.0.1:5000", "unknown scheme 'htp'"),
    "MEDTL_TEST_HOLD_TRIAL": ("three", "not '<trial number>:<marker file>'"),
    "MEDTL_TEST_HOLD_EPOCH": ("three", "not '<trial number>:<marker file>'"),
}


def _bad(name: str, tmp_path: Path) -> str:
    (tmp_path / "a-file").write_text("x")
    return BAD[name][0].format(file=tmp_path / "a-file", missing=tmp_path / "missing")


def test_every_registered_variable_has_a_bad_value_here():
    assert set(BAD) == set(settings.list_settings())


def test_every_variable_the_code_reads_is_registered():
    read_here = set()
    for package in ("backbones", "tasks", "pretrain", "tracking", "benchmark", "tests"):
        for path in (p for p in (REPO / package).rglob("*.py") if p != Path(__file__).resolve()):
            read_here |= set(re.findall(r"\bMEDTL_[A-Z_]+\b", path.read_text()))
    assert read_here - set(settings.list_settings()) == set()


@pytest.mark.parametrize("name", sorted(BAD))
def test_a_bad_value_names_the_variable_the_value_what_is_valid_and_the_fix(name, tmp_path):
    value = _bad(name, tmp_path)
    with pytest.raises(SettingError) as err:
        read(name, {name: value})
    message, setting = str(err.value), settings.SETTINGS[name]
    assert err.value.names == (name,)
    assert f"{name}=" in message and BAD[name][1] in message  # the thing and what is wrong
    assert f"Valid: {setting.valid}" in message and f"Fix: export {name}={setting.example}" in message
    assert f"unset {name}" in message
    assert "hunter2" not in message  # passwords are hidden
    assert read(name, {name: setting.example}) is not None or setting.example == ""  # the advice is valid advice


@pytest.mark.parametrize("name", sorted(BAD))
def test_unset_or_empty_is_the_default(name):
    default = settings.SETTINGS[name].default
    assert read(name, {}) == default and read(name, {name: "  "}) == default


def test_values_are_parsed_to_their_types(tmp_path):
    assert read("MEDTL_LEASE_SECONDS", {"MEDTL_LEASE_SECONDS": "12.5"}) == 12.5
    assert read("MEDTL_TENSOR_STORE_GB", {"MEDTL_TENSOR_STORE_GB": "0"}) == 0.0
    assert read("MEDTL_CACHE", {"MEDTL_CACHE": str(tmp_path / "new")}) == tmp_path / "new"  # created on use
    assert read("MEDTL_TEST_HOLD_TRIAL", {"MEDTL_TEST_HOLD_TRIAL": "3:/tmp/m"}) == (3, Path("/tmp/m"))
    assert read("MEDTL_OPTUNA_STORAGE", {"MEDTL_OPTUNA_STORAGE": f"sqlite:///{tmp_path}/o.db"}) == f"sqlite:///{tmp_path}/o.db"
    assert read("MEDTL_OPTUNA_STORAGE", {"MEDTL_OPTUNA_STORAGE": "journal.log"}) == "journal.log"  # a journal file
    for uri in ("http://127.0.0.1:5000", "file:///tmp/mlruns", "mlruns", "sqlite:///mlruns.db"):
        assert read("MLFLOW_TRACKING_URI", {"MLFLOW_TRACKING_URI": uri}) == uri
    with pytest.raises(SettingError, match="MEDTL_LEASE_SECONDS='-5'.*must be greater than 0"):
        read("MEDTL_LEASE_SECONDS", {"MEDTL_LEASE_SECONDS": "-5"})
    with pytest.raises(SettingError, match="MEDTL_TENSOR_STORE_GB='nan'.*not a finite number"):
        read("MEDTL_TENSOR_STORE_GB", {"MEDTL_TENSOR_STORE_GB": "nan"})


def test_an_unknown_name_is_a_programming_error():
    with pytest.raises(KeyError, match="MEDTL_NOPE is not a registered environment variable.*tracking/settings.py"):
        read("MEDTL_NOPE", {})


def test_check_all_lists_every_bad_variable_at_once(tmp_path):
    environ = {name: _bad(name, tmp_path) for name in BAD} | {"UNRELATED": "x"}
    with pytest.raises(SettingError) as err:
        check_all(environ)
    message = str(err.value)
    assert err.value.names == tuple(sorted(BAD))
    assert message.startswith(f"{len(BAD)} environment variable(s) have a value medtl cannot use")
    for name in BAD:
        assert f"\n  {name}=" in message and f"Fix: export {name}=" in message
    good = {"MEDTL_LEASE_SECONDS": "60", "MEDTL_TENSOR_STORE_GB": ""}
    assert check_all(good) == {"MEDTL_LEASE_SECONDS": 60.0}  # only the variables that are set
    assert check_all({}) == {}


@pytest.mark.parametrize("name, module", [("MEDTL_LEASE_SECONDS", "tracking.claims"),
                                          ("MEDTL_TENSOR_STORE_GB", "tasks.data.device_pipeline")])
def test_a_bad_value_does_not_break_the_import_and_fails_on_use_naming_it(name, module):
    code = (f"import {module}\n"
            "from tracking.settings import SettingError\n"
            "from tracking.claims import Claims\n"
            "from tasks.data.device_pipeline import resolve_pipeline\n"
            "try:\n"
            "    Claims(client=None, experiment_id='0') if 'LEASE' in '" + name + "' else resolve_pipeline('auto', 10, 8)\n"
            "except SettingError as exc:\n"
            "    print('SettingError:', exc)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), name: "abc"}, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"SettingError: Environment variable {name}='abc'" in proc.stdout and "Fix: export" in proc.stdout

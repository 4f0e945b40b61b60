"""Shared fixtures: the real data fixtures folder, and an isolated MLflow store per test."""

from __future__ import annotations

import collections
import json
import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# No test may reach the network: albumentations' version check and MLflow telemetry stay off.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

# `make test` runs two pytest-xdist workers; each torch would otherwise start one thread per core, so
# 2 workers x 2 threads fight over 2 cores (measured on the 2-core machine: two training-heavy test
# files took 99 s with torch's default threads, 65 s with one thread per worker). Split the cores
# instead; the CLI subprocesses tests start inherit it. A user's own OMP_NUM_THREADS wins.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))  # set by xdist before conftest is imported
if _WORKERS > 1 and not os.environ.get("OMP_NUM_THREADS"):
    os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // _WORKERS))
    if "torch" in sys.modules:  # read at torch's start-up; a plugin may have imported it already
        sys.modules["torch"].set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


# Seconds each test file took in a whole run (`make test-durations` rewrites it). `make test` hands files to its
# two workers longest first (pytest-xdist --dist loadfile --no-loadscope-reorder): a long file handed out last
# would run alone at the end while the other worker idles. A file not listed yet counts as 0 s (goes last).
DURATIONS = Path(__file__).with_name("durations.json")
_SECONDS: collections.Counter = collections.Counter()


def pytest_addoption(parser):
    parser.addoption("--record-durations", action="store_true",
                     help=f"write each test file's seconds to {DURATIONS.name} (the order `make test` runs files in)")


def pytest_collection_modifyitems(config, items):
    seconds = json.loads(DURATIONS.read_text()) if DURATIONS.is_file() else {}
    items.sort(key=lambda item: -seconds.get(item.nodeid.split("::")[0], 0.0))  # stable: files stay whole, in order


def pytest_runtest_logreport(report):
    _SECONDS[report.nodeid.split("::")[0]] += report.duration


def pytest_sessionfinish(session):
    if session.config.getoption("--record-durations") and not hasattr(session.config, "workerinput"):
        DURATIONS.write_text(json.dumps({f: round(s, 1) for f, s in sorted(_SECONDS.items())}, indent=1) + "\n")


def fixtures_root() -> Path:
    return Path(os.environ.get("MEDTL_FIXTURES", REPO.parent / "shared" / "data"))


@pytest.fixture
def shared_data() -> Path:
    """`../shared/data` (or $MEDTL_FIXTURES); the test is skipped with a reason when absent."""
    root = fixtures_root()
    if not root.is_dir():
        pytest.skip(f"real data fixtures not found at {root} (set MEDTL_FIXTURES to their folder)")
    return root


@pytest.fixture
def mlflow_uri(tmp_path, monkeypatch) -> str:
    """A fresh SQLite store in a temporary working directory (artifacts land beside it)."""
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


@pytest.fixture(scope="session", autouse=True)
def _store_schema_once(tmp_path_factory):
    """Build MLflow's SQLite schema once per test process and copy it for every new store.

    A fresh store runs MLflow's whole migration chain (about 1.2 s each on the 2-core machine), and the
    in-process tests create well over a hundred. `tracking.preflight.creating_store` (lock, scratch file,
    atomic rename) runs unchanged; only its `build_schema` step becomes a copy of the schema the real
    step built at the start of the session. The Default experiment's artifact location names the folder
    the store was created from, so the copy gets the one MLflow would have written there.
    """
    import shutil
    import sqlite3
    from contextlib import closing

    from tracking import preflight

    folder = tmp_path_factory.mktemp("schema")
    template = folder / "template.db"
    previous = os.getcwd()
    os.chdir(folder)
    try:
        preflight.build_schema(template)
    finally:
        os.chdir(previous)
    with closing(sqlite3.connect(template)) as db:
        (default_location,) = db.execute("SELECT artifact_location FROM experiments WHERE experiment_id = 0").fetchone()

    def copy_schema(path: Path) -> None:
        shutil.copyfile(template, path)
        location = default_location.replace(str(folder), str(Path.cwd()), 1)
        with closing(sqlite3.connect(path)) as db, db:  # closed, and the update committed
            db.execute("UPDATE experiments SET artifact_location = ? WHERE experiment_id = 0", (location,))

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(preflight, "build_schema", copy_schema)
        yield

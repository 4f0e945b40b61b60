"""Shared fixtures: the real data fixtures folder, and an isolated MLflow store per test."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# No test may reach the network: albumentations' version check and MLflow telemetry stay off.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


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

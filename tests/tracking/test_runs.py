"""Tracking primitives: flattened params, run status on success / failure / interrupt, lookup by hash."""

import pytest

from tracking import CellRun, client, ensure_experiment, finished_runs_by_hash, flatten, tracking_uri
from tracking.runs import ERROR_TAG, HASH_TAG


def test_flatten_nests_with_dots_and_keeps_lists_readable():
    assert flatten({"a": {"b": 1, "c": {"d": "x"}}, "e": [1, 2], "f": 0.5}) == {"a.b": "1", "a.c.d": "x", "e": "[1, 2]", "f": "0.5"}


def test_default_store_is_embedded_sqlite(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking_uri() == "sqlite:///mlruns.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert tracking_uri() == "http://127.0.0.1:5000" and tracking_uri("sqlite:///x.db") == "sqlite:///x.db"


def test_cell_run_status_and_lookup(mlflow_uri, tmp_path):
    c = client(mlflow_uri)
    exp = ensure_experiment(c, "t")
    assert c.get_experiment(exp).artifact_location == (tmp_path / "mlartifacts").as_uri()
    with CellRun(c, exp, name="ok", tags={HASH_TAG: "h1"}, params={"lr": "0.1"}) as ok:
        ok.log_metrics({"test/mcc": 0.5})
    with pytest.raises(RuntimeError), CellRun(c, exp, name="bad", tags={HASH_TAG: "h2"}, params={}) as bad:
        raise RuntimeError("broken input: fix it")
    with pytest.raises(KeyboardInterrupt), CellRun(c, exp, name="killed", tags={HASH_TAG: "h3"}, params={}) as killed:
        raise KeyboardInterrupt
    assert c.get_run(ok.run_id).info.status == "FINISHED" and c.get_run(ok.run_id).data.params == {"lr": "0.1"}
    failed = c.get_run(bad.run_id)
    assert failed.info.status == "FAILED" and failed.data.tags[ERROR_TAG] == "RuntimeError: broken input: fix it"
    assert [a.path for a in c.list_artifacts(bad.run_id)] == ["error.txt"]
    assert c.get_run(killed.run_id).info.status == "KILLED"
    assert set(finished_runs_by_hash(c, exp)) == {"h1"}


def test_git_sha_is_medtl_checkout_not_cwd(tmp_path, monkeypatch):
    import subprocess

    from tracking.environment import SOURCE_DIR, git_sha

    git_sha.cache_clear()
    monkeypatch.chdir(tmp_path)  # not a repository
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=SOURCE_DIR).stdout.strip()
    if not head:
        pytest.skip("medtl is not running from a git checkout (e.g. an sdist)")
    assert git_sha().startswith(head) and len(head) == 40


def test_git_sha_of_another_repository_is_not_reported(tmp_path, monkeypatch):
    import subprocess

    import tracking.environment as env

    other = tmp_path / "project"
    (other / ".venv" / "tracking").mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(other)], check=True)
    monkeypatch.setattr(env, "SOURCE_DIR", other / ".venv" / "tracking")  # installed inside someone else's repo
    env.git_sha.cache_clear()
    try:
        assert env.git_sha().startswith("release-")
    finally:
        env.git_sha.cache_clear()


def test_a_store_made_from_the_tests_copied_schema_equals_one_mlflow_builds(tmp_path, monkeypatch):
    # tests/conftest.py copies one schema for every new store (speed); it must be what MLflow itself builds there.
    import sqlite3

    from mlflow.tracking import MlflowClient

    from tracking.preflight import creating_store

    monkeypatch.chdir(tmp_path)
    MlflowClient(f"sqlite:///{tmp_path / 'built.db'}").search_experiments()  # MLflow's own migrations
    with creating_store(f"sqlite:///{tmp_path / 'copied.db'}"):
        pass

    def content(name):
        db = sqlite3.connect(tmp_path / name)
        try:
            # MLflow's own migrations write a table's constraints in varying order (set iteration): compare lines, sorted
            tables = [sorted(line.strip().rstrip(",") for line in r[0].splitlines())
                      for r in db.execute("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY name")]
            return (tables, db.execute("SELECT version_num FROM alembic_version").fetchall(),
                    db.execute("SELECT experiment_id, name, artifact_location, lifecycle_stage FROM experiments").fetchall())
        finally:
            db.close()

    built, copied = content("built.db"), content("copied.db")
    assert copied == built and built[2] == [(0, "Default", str(tmp_path / "mlruns" / "0"), "active")]

"""`medtl server` (MLflow tracking server, PostgreSQL backend, served artifacts) with a suite and a study pointed at it.

The server is started by the test from `medtl server` on a free 127.0.0.1 port, over the PostgreSQL
server of tests/servers.py (one database for MLflow, another for Optuna: each keeps its own
alembic_version table), and stopped by it. What the suite and the study recorded is read back
through the server's REST API, as a teammate's client would.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import requests
import sqlalchemy

from benchmark.cli import main
from tests.benchmark.suites import write_suite
from tests.servers import free_port, postgres  # noqa: F401 - the fixture

REPO = Path(__file__).resolve().parents[2]
TINY = dict(target={"dataset": "gen-target", "options": {"size": 16}}, image_size=16, folds=2,
            sources={"none": {"weights": "scratch"}}, hparams={"epochs": 1, "batch_size": 32})


def _database(base_url: str, name: str) -> str:
    """A new database `name` on the server of `base_url`; its URL."""
    engine = sqlalchemy.create_engine(base_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(sqlalchemy.text(f"DROP DATABASE IF EXISTS {name}"))
        connection.execute(sqlalchemy.text(f"CREATE DATABASE {name}"))
    engine.dispose()
    return base_url.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture
def tracking_server(postgres, tmp_path):  # noqa: F811
    """(http URL of a running `medtl server`, Optuna storage URL, artifacts folder); stopped afterwards."""
    backend, storage = _database(postgres, "mlflow_server"), _database(postgres, "optuna_studies")
    port, artifacts, log = free_port(), tmp_path / "server-artifacts", tmp_path / "server.log"
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    with open(log, "w") as out:
        # Its own process group: `mlflow server` starts uvicorn as a child, and both must stop.
        proc = subprocess.Popen([sys.executable, "-m", "benchmark.cli", "server", "--backend-store-uri", backend,
                                 "--artifacts-destination", str(artifacts), "--port", str(port), "--workers", "1"],
                                cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 90
        while True:
            try:
                if requests.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if proc.poll() is not None or time.time() > deadline:
                pytest.fail(f"medtl server did not come up on {url}: {log.read_text()[-1500:]}")
            time.sleep(0.5)
        yield url, storage, artifacts
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=20)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def _search(url: str, experiment: str) -> list[dict]:
    found = requests.get(f"{url}/api/2.0/mlflow/experiments/get-by-name", params={"experiment_name": experiment}, timeout=10)
    assert found.status_code == 200, found.text
    experiment_id = found.json()["experiment"]["experiment_id"]
    answer = requests.post(f"{url}/api/2.0/mlflow/runs/search", json={"experiment_ids": [experiment_id], "max_results": 500},
                           timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json().get("runs", [])


def _tags(run: dict) -> dict:
    return {t["key"]: t["value"] for t in run["data"].get("tags", [])}


@pytest.mark.slow
def test_a_suite_and_a_study_on_the_team_server_are_visible_through_its_rest_api(tmp_path, monkeypatch, tracking_server):
    url, storage, artifacts = tracking_server
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    path = write_suite(tmp_path, name="srv", **TINY, tune={"scope": "shared"})  # one study for the row
    assert main(["benchmark", str(path), "--tracking-uri", url, "--accelerator", "cpu"]) == 0
    # Two Optuna workers on one PostgreSQL storage share the study's budget of 2 trials.
    assert main(["tune", str(path), "--n-trials", "2", "--workers", "2", "--storage", storage, "--tracking-uri", url]) == 0

    runs = _search(url, "medtl-srv")
    cells = [r for r in runs if _tags(r).get("medtl.stage") == "finetune"]
    assert len(cells) == 2 and all(r["info"]["status"] == "FINISHED" for r in cells)
    assert all({m["key"] for m in r["data"]["metrics"]} >= {"test/mcc", "test/fps"} for r in cells)
    assert [_tags(r)["medtl.stage"] for r in runs].count("suite") == 1
    # Artifacts went through the server into its artifact root (the client needs no shared folder).
    assert len(list(artifacts.rglob("predictions.csv"))) == 2

    trials = [r for r in _search(url, "medtl-srv-tuning") if _tags(r).get("medtl.trial_state")]
    assert sorted(_tags(r)["medtl.trial_state"] for r in trials) == ["COMPLETE", "COMPLETE"]
    (study_name,) = optuna.get_all_study_names(storage)
    study = optuna.load_study(study_name=study_name, storage=storage)
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]


@pytest.mark.parametrize("argv, words", [
    (["--backend-store-uri", "postgresql+psycopg2://nobody@127.0.0.1:1/nothing"],
     ["cannot be reached", "127.0.0.1", "Fix: start PostgreSQL"]),
    (["--host", "0.0.0.0", "--backend-store-uri", "postgresql+psycopg2://nobody@127.0.0.1:1/nothing"],
     ["without --auth", "authenticating proxy"]),
    (["--backend-store-uri", "postgresql+psycopg2://x@127.0.0.1:1/x", "--auth"], ["--auth", "Fix:"]),
    (["--backend-store-uri", "postgresql+psycopg2://x@127.0.0.1:1/x", "--workers", "0"], ["--workers 0", "Fix: --workers 4"]),
])
def test_bad_server_options_fail_with_the_fix(capsys, monkeypatch, argv, words):
    monkeypatch.delenv("MLFLOW_FLASK_SERVER_SECRET_KEY", raising=False)
    monkeypatch.delenv("MEDTL_SERVER_DB", raising=False)
    assert main(["server", *argv]) == 2
    err = capsys.readouterr().err
    assert all(w in err for w in words), err
    assert "Traceback" not in err


def test_the_server_listens_on_loopback_with_served_artifacts_by_default():
    from benchmark.run.server import ServerSettings, server_command

    cmd = server_command(ServerSettings(backend_store_uri="postgresql+psycopg2://u@db/mlflow"))
    assert cmd[cmd.index("--host") + 1] == "127.0.0.1"
    assert "--serve-artifacts" in cmd and "--app-name" not in cmd
    assert cmd[cmd.index("--backend-store-uri") + 1] == "postgresql+psycopg2://u@db/mlflow"

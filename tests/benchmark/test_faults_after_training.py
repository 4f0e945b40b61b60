"""Faults after cells have trained: no finished cell is lost, one clean message, rc 1 (issue 21).

    PYTHONPATH=. .venv/bin/python -m pytest -q -p no:cacheprovider -m slow tests/benchmark/test_faults_after_training.py

The report folder failing once the cells are done (disk full, a mount gone read-only: the cases that
cannot be checked before the first cell), and a tracking server that stops answering mid-suite.
"""

from __future__ import annotations

import pytest
from mlflow.exceptions import MlflowException

from benchmark.cli import main
from tests.benchmark.faults import runs, suite

pytestmark = pytest.mark.slow


def _stages(uri: str) -> list[tuple[str, str]]:
    return sorted((r.data.tags.get("medtl.stage"), r.info.status) for r in runs(uri))


def test_a_report_that_cannot_be_written_keeps_the_finished_cells(tmp_path, mlflow_uri, monkeypatch, capsys):
    import benchmark.run.runner as runner

    def read_only(*args, **kwargs):
        raise OSError(30, "Read-only file system", str(tmp_path / "reports" / "tiny" / "leaderboard.csv"))

    monkeypatch.setattr(runner, "write_report", read_only)
    code = main(["benchmark", str(suite(tmp_path)), "--accelerator", "cpu"])
    out, err = capsys.readouterr()
    assert code == 1, out[-3000:] + err[-3000:]
    assert "The report could not be written to" in out and "Read-only file system" in out
    assert "2 cell(s) that ran are FINISHED in MLflow and kept" in out and "Fix: `medtl report" in out
    assert "Traceback" not in out + err
    # The cells stay FINISHED; the suite run says the report failed (FAILED, not KILLED as if interrupted).
    assert _stages(mlflow_uri) == [("finetune", "FINISHED"), ("finetune", "FINISHED"), ("suite", "FAILED")]

    monkeypatch.undo()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_uri)
    assert main(["benchmark", str(suite(tmp_path)), "--accelerator", "cpu"]) == 0  # the rerun trains nothing
    assert "2 skipped" in capsys.readouterr().out
    assert (tmp_path / "reports" / "tiny" / "leaderboard.csv").exists()


def test_a_tracking_server_that_stops_answering_mid_suite_gives_one_message_and_rc_1(tmp_path, mlflow_uri, monkeypatch, capsys):
    import tracking.claims as claims

    real, calls = claims.start_run, []

    def server_gone_after_the_first_cell(*args, **kwargs):
        calls.append(kwargs.get("name"))
        if len(calls) > 1:  # the second cell's claim: the server has died meanwhile
            raise MlflowException("API request to http://127.0.0.1:5999/api/2.0/mlflow/runs/create failed with exception "
                                  "HTTPConnectionPool(host='127.0.0.1', port=5999): Max retries exceeded (Connection refused)")
        return real(*args, **kwargs)

    monkeypatch.setattr(claims, "start_run", server_gone_after_the_first_cell)
    code = main(["benchmark", str(suite(tmp_path)), "--accelerator", "cpu"])
    out, err = capsys.readouterr()
    assert code == 1, out[-3000:] + err[-3000:]
    assert err.count("medtl: error:") == 1 and "stopped answering while the command ran" in err
    assert "Max retries exceeded" in err and "Fix: restart the tracking server" in err
    assert "Traceback" not in out + err
    assert ("finetune", "FINISHED") in _stages(mlflow_uri)  # the cell before the loss is kept

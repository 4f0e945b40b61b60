"""`medtl benchmark SUITE --launcher local --workers 2`: two worker processes share one suite through the cell claims.

The SLURM path is tests/benchmark/test_scale_slurm.py; the 2-worker / 1-worker wall-time ratio is measured
by `python -m benchmark.speed.launch_bench` (a measurement, not an assertion).
"""

import pytest
from mlflow.tracking import MlflowClient

from benchmark.cli import main
from benchmark.run.launchers import LAUNCHERS, list_launchers
from tracking.naming import suite_experiment
from benchmark.plan.suite import load_suite
from tests.benchmark.suites import write_suite

TINY = dict(target={"dataset": "gen-target", "options": {"size": 16}}, image_size=16, folds=2, seeds=[0, 1],
            sources={"none": {"weights": "scratch"}}, hparams={"epochs": 1, "batch_size": 32})


def _runs(uri: str, path):
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(suite_experiment(load_suite(path).name))
    return client.search_runs([experiment.experiment_id])


@pytest.mark.slow
def test_two_local_workers_finish_every_cell_exactly_once(tmp_path, mlflow_uri):
    path = write_suite(tmp_path, name="local2", **TINY)
    assert main(["benchmark", str(path), "--launcher", "local", "--workers", "2", "--accelerator", "cpu"]) == 0

    runs = _runs(mlflow_uri, path)
    parents = [r for r in runs if r.data.tags.get("medtl.stage") == "suite"]
    cells = [r for r in runs if r.data.tags.get("medtl.stage") == "finetune"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert parents[0].data.tags["medtl.launcher"] == "local"
    expected = {c.hash for c in load_suite(path).cells}
    assert len(expected) == 4
    assert sorted(r.data.tags["medtl.spec_hash"] for r in cells) == sorted(expected)  # each cell once, none twice
    assert all(r.info.status == "FINISHED" for r in cells)
    assert {r.data.tags["mlflow.parentRunId"] for r in cells} == {parents[0].info.run_id}
    # Both workers took cells: two processes, not one doing everything.
    assert len({r.data.tags["medtl.pid"] for r in cells}) == 2
    assert parents[0].data.metrics["cells_ran"] == 4

    # A rerun finds nothing to do: no new cell run, a new parent that reports the 4 as skipped.
    assert main(["benchmark", str(path), "--launcher", "local", "--workers", "2", "--accelerator", "cpu"]) == 0
    again = _runs(mlflow_uri, path)
    assert len([r for r in again if r.data.tags.get("medtl.stage") == "finetune"]) == 4
    latest = max((r for r in again if r.data.tags.get("medtl.stage") == "suite"), key=lambda r: r.info.start_time)
    assert latest.data.metrics["cells_skipped"] == 4 and latest.data.metrics["cells_ran"] == 0


def test_launchers_are_registered():
    assert list_launchers() == ["local", "slurm"] and all(hasattr(LAUNCHERS[n], "launch") for n in list_launchers())


@pytest.mark.parametrize("argv, words", [
    (["--launcher", "local", "--workers", "0"], ["--workers 0", "valid: >= 1", "Fix: --workers 2"]),
    (["--workers", "2"], ["--workers 2 applies to a launcher", "Fix: add --launcher local"]),
    (["--launcher", "pbs"], ["Unknown launcher 'pbs'", "Valid launchers: local, slurm"]),
])
def test_bad_launcher_options_fail_with_the_fix(tmp_path, mlflow_uri, capsys, argv, words):
    path = write_suite(tmp_path, name="bad", **TINY)
    assert main(["benchmark", str(path), *argv]) == 2
    err = capsys.readouterr().err
    assert all(w in err for w in words), err
    assert "Traceback" not in err
    client = MlflowClient(mlflow_uri)
    experiment = client.get_experiment_by_name("medtl-bad")
    assert experiment is None or not client.search_runs([experiment.experiment_id])  # nothing ran, no run left behind


def test_slurm_without_sbatch_fails_with_the_fix(tmp_path, mlflow_uri, capsys, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))  # no sbatch anywhere
    path = write_suite(tmp_path, name="nosbatch", **TINY)
    assert main(["benchmark", str(path), "--launcher", "slurm", "--accelerator", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "`sbatch` is not on PATH" in err and "--launcher local" in err and "Traceback" not in err
    assert MlflowClient(mlflow_uri).get_experiment_by_name("medtl-nosbatch") is None  # refused before any record


def test_stages_run_pretraining_then_fine_tuning_then_ensembles_and_skip_finished_cells(tmp_path):
    from benchmark.run.launchers import stages

    path = write_suite(tmp_path, name="staged", target={"dataset": "gen-target", "options": {"size": 16}}, image_size=16,
                       folds=2, strategies=["full", "ensemble-sources"])
    suite = load_suite(path)
    plan = stages(suite, finished={})
    assert [name for name, _ in plan] == ["pretrain", "finetune", "ensembles"]
    assert sum(len(cells) for _, cells in plan) == len(suite.cells)
    assert all(c.stage == "pretrain" for c in plan[0][1]) and all(c.strategy == "ensemble-sources" for c in plan[2][1])
    done = {c.hash: object() for c in plan[0][1]}  # pretraining FINISHED by an earlier launch
    assert [name for name, _ in stages(suite, finished=done)] == ["finetune", "ensembles"]

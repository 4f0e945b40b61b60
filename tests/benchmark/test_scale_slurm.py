"""`medtl benchmark SUITE --launcher slurm` against a real single-node SLURM started by the test (tests/slurm_cluster.py).

A tiny suite with one pretraining cell and two fine-tuning cells: a job array for the pretraining
stage, one for fine-tuning that depends on it, and a report job; the runs are then read from MLflow.
"""

import pytest
from mlflow.tracking import MlflowClient

from benchmark.cli import main
from tracking.naming import suite_experiment
from benchmark.plan.suite import load_suite
from tests.benchmark.suites import write_suite
from tests.slurm_cluster import slurm_cluster, wait_for_queue  # noqa: F401 - the fixture

pytestmark = pytest.mark.slow

SUITE = dict(
    target={"dataset": "gen-target", "options": {"size": 16}}, image_size=16, folds=2,
    sources={"gen-general": {"pretrain": {"dataset": "gen-general", "options": {"size": 16, "per_class": 10},
                                          "hparams": {"epochs": 1, "batch_size": 32}}}},
    hparams={"epochs": 1, "batch_size": 32},
)


def test_slurm_launcher_runs_the_stages_as_dependent_job_arrays(tmp_path, mlflow_uri, slurm_cluster, capsys):  # noqa: F811
    path = write_suite(tmp_path, name="onslurm", **SUITE)
    argv = ["benchmark", str(path), "--launcher", "slurm", "--workers", "2", "--accelerator", "cpu",
            "--jobs-folder", str(tmp_path / "jobs"), "--timeout-min", "10"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "Stage pretrain: job array" in out and "Stage finetune: job array" in out and "Report: job" in out
    assert wait_for_queue(300), f"SLURM jobs still queued after 300 s; logs in {tmp_path / 'jobs'}"

    client = MlflowClient(mlflow_uri)
    experiment = client.get_experiment_by_name(suite_experiment(load_suite(path).name))
    runs = client.search_runs([experiment.experiment_id])
    by_stage = {stage: [r for r in runs if r.data.tags.get("medtl.stage") == stage] for stage in ("suite", "pretrain", "finetune")}
    (parent,) = by_stage["suite"]
    assert parent.data.tags["medtl.launcher"] == "slurm"
    assert parent.info.status == "FINISHED", parent.data.tags.get("medtl.error")  # ended by the report job
    assert len(by_stage["pretrain"]) == 1 and len(by_stage["finetune"]) == 2
    cells = by_stage["pretrain"] + by_stage["finetune"]
    assert all(r.info.status == "FINISHED" for r in cells), [(r.info.run_name, r.info.status) for r in cells]
    assert sorted(r.data.tags["medtl.spec_hash"] for r in cells) == sorted(c.hash for c in load_suite(path).cells)
    assert all(r.data.tags["mlflow.parentRunId"] == parent.info.run_id for r in cells)
    # The fine-tuning array waited for the pretraining array (afterany), and used its weights.
    pretrain_end = by_stage["pretrain"][0].info.end_time
    assert all(r.info.start_time >= pretrain_end for r in by_stage["finetune"])
    assert all(r.data.params["weights"] == f"cell:{by_stage['pretrain'][0].data.tags['medtl.spec_hash']}"
               for r in by_stage["finetune"])
    # Each cell ran in its own array task (its own process).
    assert len({r.data.tags["medtl.pid"] for r in cells}) == 3
    assert parent.data.metrics["cells_ran"] == 3
    assert any(a.path == "report" for a in client.list_artifacts(parent.info.run_id))


def test_a_job_sbatch_refuses_fails_with_its_reason_and_the_fix(tmp_path, mlflow_uri, slurm_cluster, capsys):  # noqa: F811
    path = write_suite(tmp_path, name="refused", **SUITE)
    argv = ["benchmark", str(path), "--launcher", "slurm", "--accelerator", "cpu", "--slurm-partition", "nosuchpartition",
            "--jobs-folder", str(tmp_path / "jobs")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "sbatch refused the jobs" in err and "invalid partition specified: nosuchpartition" in err
    assert "Fix:" in err and "Traceback" not in err
    client = MlflowClient(mlflow_uri)
    experiment = client.get_experiment_by_name(suite_experiment(load_suite(path).name))
    (parent,) = client.search_runs([experiment.experiment_id])
    assert parent.info.status == "FAILED"  # the suite run records that nothing was submitted

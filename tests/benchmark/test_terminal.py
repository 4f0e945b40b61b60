"""What a researcher sees: a quiet terminal, consistent help, pre-run checks, runs the MLflow UI opens on."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from benchmark.cli import build_parser, list_suites, main
from benchmark.plan.suite import load_suite
from tests.benchmark.suites import write_suite

REPO = Path(__file__).resolve().parents[2]
# Library lines that said nothing to a researcher, once per cell (issue 22).
NOISE = ("srun", "LeafSpec", "does not have many workers", "GPU available", "LitLogger", "Creating initial MLflow database",
         "exists and is not empty")


def _subcommands() -> dict:
    parser = build_parser()
    (sub,) = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
    return dict(sub.choices)


def test_help_names_the_builtin_suites_and_every_tracking_uri_has_help():
    commands = _subcommands()
    suites = list_suites()
    assert {"smoke", "tune-smoke", "real-cpu"} <= set(suites)
    for name in ("benchmark", "tune", "report"):
        (positional,) = [a for a in commands[name]._actions if a.dest == "suite"]
        assert f"({', '.join(suites)})" in positional.help, name
    with_uri = [name for name, p in commands.items() if any("--tracking-uri" in a.option_strings for a in p._actions)]
    assert {"benchmark", "report", "tune", "migrate", "throughput"} <= set(with_uri)
    for name in with_uri:
        (action,) = [a for a in commands[name]._actions if "--tracking-uri" in a.option_strings]
        assert action.help and "tracking URI" in action.help, name
    accelerators = {name: next(a.default for a in commands[name]._actions if a.dest == "accelerator")
                    for name in ("benchmark", "tune")}
    assert accelerators == {"benchmark": "auto", "tune": "auto"}


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_missing_imagenet_cache_stops_the_suite_once_before_any_run(tmp_path, monkeypatch, capsys):
    import torchvision.models as tvm

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    weights = tvm.ResNet18_Weights.IMAGENET1K_V1
    # "No network" without depending on DNS: the download URL points at a closed loopback port.
    monkeypatch.setattr(type(weights), "url", property(lambda self: f"http://127.0.0.1:{_closed_port()}/resnet18-f37072fd.pth"))
    path = write_suite(tmp_path, name="offline", backbones=["resnet18"], folds=3,
                       sources={"imagenet": {"weights": "imagenet"}})
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    assert main(["benchmark", str(path), "--tracking-uri", uri, "--accelerator", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.count("are not in the cache") == 1  # once, not once per cell
    assert str(tmp_path / "torch" / "hub" / "checkpoints" / "resnet18-f37072fd.pth") in err
    assert "get_weight('ResNet18_Weights.IMAGENET1K_V1')" in err and "sources.imagenet" in err
    experiment = MlflowClient(uri).get_experiment_by_name("medtl-offline") if (tmp_path / "mlruns.db").exists() else None
    assert experiment is None or not MlflowClient(uri).search_runs([experiment.experiment_id])


def test_tune_says_which_rows_it_skips_and_where_the_studies_are(tmp_path, monkeypatch, capsys):
    from benchmark.tune.study import TuneSettings, study_rows, tune_suite

    monkeypatch.chdir(tmp_path)
    path = write_suite(tmp_path, name="untuned", strategies=["svm"], sources={"none": {"weights": "scratch"}})
    suite = load_suite(path)
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    lines = []
    assert tune_suite(suite, TuneSettings(storage=f"sqlite:///{tmp_path / 'optuna.db'}", n_trials=2, tracking_uri=uri),
                      echo=lines.append) == [] and study_rows(suite) == []
    text = "\n".join(lines)
    assert "Tuning 0 of 1 row(s)" in text
    assert "not tuned: none/smallcnn/svm: features strategy" in text
    experiment = MlflowClient(uri).get_experiment_by_name("medtl-untuned-tuning")
    link = f"http://127.0.0.1:5000/#/experiments/{experiment.experiment_id}/runs?workflowType=machine_learning"
    assert link in text
    # A suite with studies and no cells yet still gets its link (it answered "no runs of suite" before).
    assert main(["report", str(path), "--tracking-uri", uri, "--ui-link"]) == 0
    assert capsys.readouterr().out.strip() == f"studies: {link}&viewStateShareKey=medtl"


@pytest.mark.slow
def test_suite_output_is_quiet_and_a_finished_rerun_creates_no_parent_run(tmp_path):
    """`medtl benchmark` as a user runs it (a subprocess), with `srun` on the PATH as on a SLURM login node."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "srun").chmod(0o755)
    path = write_suite(tmp_path, name="quiet", folds=2, sources={"none": {"weights": "scratch"}},
                       hparams={"epochs": 2, "batch_size": 32})
    env = {**os.environ, "PYTHONPATH": str(REPO), "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
           "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlruns.db'}", "COLUMNS": "120"}
    env.pop("SLURM_JOB_ID", None)
    command = [sys.executable, "-m", "benchmark.cli", "benchmark", str(path), "--accelerator", "cpu"]
    first = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stderr[-3000:]
    output = first.stdout + first.stderr
    assert [word for word in NOISE if word in output] == []
    assert "\n# Leaderboard: quiet" in "\n" + first.stdout  # the heading starts a line, never after a bar
    assert "/#/experiments/" in first.stdout and "workflowType=machine_learning" in first.stdout

    again = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "nothing to run" in again.stdout
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    experiment = client.get_experiment_by_name("medtl-quiet")
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if r.data.tags.get("medtl.stage") == "suite"]
    assert len(parents) == 1 and len(runs) == 3  # one parent, two cells: the rerun added no run
    assert {r.info.run_name for r in runs if r not in parents} == {"none/smallcnn/full f0 s0", "none/smallcnn/full f1 s0"}
    artifacts = {a.path for a in client.list_artifacts(parents[0].info.run_id, "report")}
    assert "report/leaderboard.csv" in artifacts

"""A failing cell is FAILED in MLflow with its error and the suite goes on; a killed suite resumes."""

import pytest
from mlflow.tracking import MlflowClient

import benchmark.run.runner as runner
from benchmark.cli import main
from benchmark.run.runner import run_suite
from tracking.naming import suite_experiment
from benchmark.plan.suite import load_suite
from tests.benchmark.suites import write_suite

CHEAP = {"epochs": 1, "batch_size": 32}


def _cells(uri, suite):
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(suite_experiment(suite.name))
    return [r for r in client.search_runs([exp.experiment_id]) if r.data.tags.get("medtl.stage") == "finetune"]


def test_failed_cell_is_recorded_and_suite_continues(tmp_path, mlflow_uri, capsys):
    path = write_suite(tmp_path, name="broken", sources={"none": {"weights": "scratch"}, "lost": {"weights": f"file:{tmp_path / 'missing.pt'}"}}, hparams=CHEAP)
    code = main(["benchmark", str(path)])
    out = capsys.readouterr().out
    assert code == 1
    assert "2 cell(s) FAILED" in out and "missing.pt" in out
    runs = _cells(mlflow_uri, load_suite(path))
    failed = [r for r in runs if r.info.status == "FAILED"]
    assert len(failed) == 2 and all("missing.pt" in r.data.tags["medtl.error"] for r in failed)
    assert {a.path for a in MlflowClient(mlflow_uri).list_artifacts(failed[0].info.run_id)} >= {"error.txt"}
    assert sum(r.info.status == "FINISHED" for r in runs) == 2  # the healthy source still ran
    # A rerun retries only the failed cells (and they fail again, still non-zero).
    assert main(["benchmark", str(path)]) == 1
    assert "Skipped 2 of 4" in capsys.readouterr().out


def test_killed_suite_resumes_without_duplicates(tmp_path, mlflow_uri, monkeypatch):
    path = write_suite(tmp_path, name="killed", sources={"none": {"weights": "scratch"}}, folds=3, hparams=CHEAP)
    real_run_cell, calls = runner.run_cell, []

    def run_cell_then_die(spec, ctx, run):
        calls.append(spec.hash)
        if len(calls) == 2:
            raise KeyboardInterrupt  # what Ctrl-C or a kill looks like from inside a cell
        return real_run_cell(spec, ctx, run)

    monkeypatch.setattr(runner, "run_cell", run_cell_then_die)
    with pytest.raises(KeyboardInterrupt):
        run_suite(path, echo=lambda *_: None)
    monkeypatch.setattr(runner, "run_cell", real_run_cell)
    outcome = run_suite(path, echo=lambda *_: None)
    assert len(outcome.skipped) == 1 and len(outcome.ran) == 2
    runs = _cells(mlflow_uri, load_suite(path))
    finished = [r.data.tags["medtl.spec_hash"] for r in runs if r.info.status == "FINISHED"]
    assert len(finished) == len(set(finished)) == 3
    assert [r.info.status for r in runs].count("KILLED") == 1


def test_unknown_names_fail_before_training_with_valid_names(tmp_path, mlflow_uri, capsys):
    path = write_suite(tmp_path, name="typo", backbones=["resnet181"])
    assert main(["benchmark", str(path)]) == 2
    err = capsys.readouterr().err
    assert "unknown backbone 'resnet181'" in err and "resnet18" in err and str(path) in err
    path = write_suite(tmp_path, name="typo2", target={"dataset": "kvasir-v3"})
    assert main(["benchmark", str(path)]) == 2
    err = capsys.readouterr().err
    assert "unknown dataset 'kvasir-v3'" in err and "gen-target" in err


def test_missing_suite_file_is_a_clear_error(capsys):
    assert main(["benchmark", "no/such/suite.yaml"]) == 2
    assert "no/such/suite.yaml not found" in capsys.readouterr().err


def test_list_shows_the_registries(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "resnet18" in out and "gen-target" in out and "layerwise" in out and "smoke" in out


def test_throughput_command_writes_a_file_named_by_its_conditions(tmp_path, capsys):
    import pandas as pd

    assert main(["throughput", "--backbones", "smallcnn", "--image-size", "32", "--batch-size", "4", "--batches", "2",
                 "--device", "cpu", "--out-dir", str(tmp_path)]) == 0
    # Named by its conditions (device, size, precision, memory format, threads); one row per measurement.
    files = list(tmp_path.glob("throughput_cpu_32px_32-true_*_t*.csv"))
    assert len(files) == 1
    frame = pd.read_csv(files[0])
    row = frame[frame["mode"] == "inference"].iloc[0]
    assert row["backbone"] == "smallcnn" and row["img_s"] > 0 and row["batch_size"] == 4 and row["image_size"] == 32


def test_multilabel_target_runs_as_a_suite(tmp_path, mlflow_uri):
    from tests.tasks.data._layouts import write_npz as _write_npz
    from tasks.data.adapters.medmnist import medmnist_info

    _write_npz(tmp_path / "chestmnist.npz", medmnist_info()["chestmnist"], n=(40, 10, 12))
    path = write_suite(tmp_path, name="multilabel", target={"dataset": "medmnist", "path": "chestmnist.npz"}, folds="official",
                       sources={"none": {"weights": "scratch"}}, hparams=CHEAP)
    assert main(["benchmark", str(path), "--data-root", str(tmp_path)]) == 0
    run = _cells(mlflow_uri, load_suite(path))[0]
    assert run.info.status == "FINISHED" and "test/mcc" in run.data.metrics
    artifacts = {a.path for a in MlflowClient(mlflow_uri).list_artifacts(run.info.run_id, "test")}
    assert artifacts == {"test/predictions.csv", "test/per_label_confusion.csv"}  # one 2x2 per label, no C x C matrix
    counts = __import__("pandas").read_csv(MlflowClient(mlflow_uri).download_artifacts(run.info.run_id, "test/per_label_confusion.csv", str(tmp_path)))
    assert len(counts) == 14 and (counts[["tn", "fp", "fn", "tp"]].sum(axis=1) == 12).all()


def test_corrupt_image_in_the_target_fails_the_cell_naming_the_file(tmp_path, mlflow_uri, capsys):
    import numpy as np
    from PIL import Image

    data = tmp_path / "data" / "folders"
    rng = np.random.default_rng(0)
    for cls in ("benign", "malignant"):
        (data / cls).mkdir(parents=True)
        for i in range(12):
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(data / cls / f"{i}.jpg")
    good = (data / "benign" / "0.jpg").read_bytes()
    (data / "benign" / "0.jpg").write_bytes(good[: len(good) // 2])  # truncated mid-scan
    path = write_suite(tmp_path, name="corrupt", target={"dataset": "class-folders", "path": "folders"},
                       sources={"none": {"weights": "scratch"}}, hparams=CHEAP)
    assert main(["benchmark", str(path), "--data-root", str(tmp_path / "data")]) == 1
    assert "benign/0.jpg" in capsys.readouterr().out
    runs = _cells(mlflow_uri, load_suite(path))
    assert runs and all(r.info.status == "FAILED" for r in runs)
    assert all("benign/0.jpg" in r.data.tags["medtl.error"] and "truncated" in r.data.tags["medtl.error"] for r in runs)


def test_cells_share_loaded_tasks_within_a_suite(tmp_path, mlflow_uri, monkeypatch):
    import benchmark.cell.route as cells

    loads = []
    real = cells.load_task
    monkeypatch.setattr(cells, "load_task", lambda name, root, **o: loads.append(name) or real(name, root, **o))
    path = write_suite(tmp_path, name="shared", folds=3, sources={"none": {"weights": "scratch"}}, hparams=CHEAP)
    assert main(["benchmark", str(path)]) == 0
    assert loads == ["gen-target"]  # indexed once for its three cells

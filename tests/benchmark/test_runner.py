"""A tiny suite end to end: MLflow contents, the planted transfer effect, resume, failures."""

import os
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from benchmark.run.runner import run_suite
from tracking.naming import suite_experiment
from benchmark.plan.suite import load_suite
from tests.benchmark.suites import write_suite

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Run the tiny suite once (1 pretraining + 4 fine-tuning cells) and a second time."""
    work = tmp_path_factory.mktemp("tiny")
    previous = os.getcwd()
    os.chdir(work)
    try:
        uri = f"sqlite:///{work / 'mlruns.db'}"
        path = write_suite(work)
        first = run_suite(path, uri=uri, accelerator="cpu", echo=lambda *_: None)
        second = run_suite(path, uri=uri, accelerator="cpu", echo=lambda *_: None)
        replica_dir = work / "replica"
        replica_dir.mkdir()
        os.chdir(replica_dir)  # a separate store: every cell runs again from nothing
        replica = run_suite(path, uri=f"sqlite:///{replica_dir / 'mlruns.db'}", accelerator="cpu", echo=lambda *_: None)
        yield {"uri": uri, "path": path, "first": first, "second": second, "replica": replica, "work": work, "client": MlflowClient(uri)}
    finally:
        os.chdir(previous)


def _cell_runs(client, suite):
    exp = client.get_experiment_by_name(suite_experiment(suite.name))
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    return [r for r in runs if r.data.tags.get("medtl.stage") in ("pretrain", "finetune")]


def test_all_cells_finish_and_report_is_written(tiny):
    first = tiny["first"]
    assert first.exit_code == 0 and not first.failed
    assert len(first.ran) == 5
    table = pd.read_csv(tiny["work"] / "reports" / "tiny" / "leaderboard.csv")
    assert set(table["source"]) == {"scratch", "gen-general"}
    assert (table["n"] == 2).all()
    # Medico 2018's micro scores beside the macro ones; no positive class was named, so no positive columns.
    assert table["micro_mcc_mean"].notna().all() and table["pos_f1_mean"].isna().all()
    markdown = (tiny["work"] / "reports" / "tiny" / "leaderboard.md").read_text()
    assert "MCC" in markdown and "gen-general" in markdown and "±" in markdown


def test_finetune_run_has_params_metrics_and_artifacts(tiny):
    client = tiny["client"]
    suite = load_suite(tiny["path"])
    spec = next(c for c in suite.finetune_cells if c.source == "gen-general")
    run = next(r for r in _cell_runs(client, suite) if r.data.tags["medtl.spec_hash"] == spec.hash)
    assert run.info.status == "FINISHED"
    params = run.data.params
    assert params["spec_hash"] == spec.hash and params["backbone"] == "smallcnn" and params["source"] == "gen-general"
    assert params["hparams.lr"] == "0.001" and params["hparams.epochs"] == "5" and params["fold"] == str(spec.fold)
    assert params["weights"].startswith("cell:")
    for name in ("test/mcc", "test/f1", "test/rec", "test/prec", "test/spec", "test/acc", "test/auc", "test/fps", "val/mcc", "train/loss"):
        assert name in run.data.metrics, name
    assert len(client.get_metric_history(run.info.run_id, "val/mcc")) == 5  # one per epoch
    assert -1.0 <= run.data.metrics["test/mcc"] <= 1.0 and run.data.metrics["test/fps"] > 0
    tags = run.data.tags
    assert tags["throughput.batch_size"] == "8" and tags["throughput.image_size"] == "32"
    assert tags["throughput.precision"] == "32-true" and tags["throughput.device"] == "cpu"
    assert tags["medtl.git_sha"] and tags["medtl.version.torch"] and tags["medtl.device"].startswith("cpu")
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)} | {a.path for a in client.list_artifacts(run.info.run_id, "test")}
    assert {"spec.json", "test/confusion_matrix.csv", "test/confusion_matrix.png", "test/predictions.csv"} <= artifacts
    local = Path(client.download_artifacts(run.info.run_id, "test/confusion_matrix.csv", str(tiny["work"] / "dl")))
    matrix = pd.read_csv(local, index_col=0)
    assert list(matrix.index) == [f"true:{n}" for n in ("lesion_0deg", "lesion_45deg", "lesion_90deg", "lesion_135deg")]
    assert int(matrix.to_numpy().sum()) == int(run.data.metrics["data/test_rows"])
    assert tags["mlflow.parentRunId"] == tiny["first"].parent_run_id


def test_pretraining_run_exports_backbone_with_provenance(tiny):
    client = tiny["client"]
    suite = load_suite(tiny["path"])
    pre = next(r for r in _cell_runs(client, suite) if r.data.tags["medtl.stage"] == "pretrain")
    assert {a.path for a in client.list_artifacts(pre.info.run_id, "pretrain")} == {"pretrain/backbone.pt", "pretrain/provenance.json"}
    assert pre.data.metrics["test/acc_micro"] > 0.5  # 16 classes: the source is learnt, not guessed


def test_planted_effect_pretrained_beats_scratch(tiny):
    """The generated target shares structure with the general source: a real load shows a gain."""
    table = tiny["first"].leaderboard.set_index("source")
    assert table.loc["gen-general", "mcc_mean"] > table.loc["scratch", "mcc_mean"] + 0.3


def test_second_invocation_skips_every_cell(tiny):
    second = tiny["second"]
    assert len(second.skipped) == 5 and not second.ran and second.exit_code == 0
    runs = _cell_runs(tiny["client"], load_suite(tiny["path"]))
    hashes = [r.data.tags["medtl.spec_hash"] for r in runs]
    assert len(hashes) == len(set(hashes)) == 5  # no new cell runs
    pd.testing.assert_frame_equal(second.leaderboard, tiny["first"].leaderboard)


def test_run_weights_load_the_pretraining_runs_checkpoint(tiny, tmp_path):
    import torch

    from backbones import WeightsError, create_backbone, parse_weights
    from benchmark.cell.weights import MlflowWeights
    from tracking.runs import finished_runs_by_hash

    client = tiny["client"]
    suite = load_suite(tiny["path"])
    pre = next(r for r in _cell_runs(client, suite) if r.data.tags["medtl.stage"] == "pretrain")
    resolver = MlflowWeights(client, {}, tmp_path)
    weights = resolver.resolve(parse_weights(f"run:{pre.info.run_id}"))
    assert weights.kind == "file"
    exported = torch.load(weights.path, weights_only=True)
    loaded = create_backbone("smallcnn", f"run:{pre.info.run_id}", resolve=resolver.resolve)
    for key, value in exported["state_dict"].items():
        assert torch.equal(loaded.state_dict()[key], value)
    # cell:<hash> resolves to the same run through the FINISHED-runs lookup.
    finished = finished_runs_by_hash(client, pre.info.experiment_id)
    same = MlflowWeights(client, finished, tmp_path).resolve(parse_weights(f"cell:{pre.data.tags['medtl.spec_hash']}"))
    assert same == weights
    finetune = next(r for r in _cell_runs(client, suite) if r.data.tags["medtl.stage"] == "finetune")
    with pytest.raises(WeightsError, match="only pretraining runs export one"):
        resolver.resolve(parse_weights(f"run:{finetune.info.run_id}"))
    with pytest.raises(WeightsError, match="not found"):
        resolver.resolve(parse_weights("run:0123456789abcdef"))
    with pytest.raises(WeightsError, match="live in MLflow"):  # without a resolver, the backbone layer says why
        create_backbone("smallcnn", f"run:{pre.info.run_id}")


def test_report_command_rebuilds_the_leaderboard(tiny, capsys):
    from benchmark.cli import main

    assert main(["report", str(tiny["path"]), "--tracking-uri", tiny["uri"], "--report-dir", str(tiny["work"] / "again")]) == 0
    out = capsys.readouterr().out
    assert "4 of 4 fine-tuning cells finished" in out and "gen-general" in out
    again = pd.read_csv(tiny["work"] / "again" / "leaderboard.csv")
    assert again["mcc_mean"].tolist() == pytest.approx(tiny["first"].leaderboard["mcc_mean"].tolist())


def test_same_suite_in_a_fresh_store_reproduces_the_metrics(tiny):
    metrics = [c for c in tiny["first"].leaderboard.columns if c.endswith(("_mean", "_std")) and not c.startswith("fps")]
    assert len(tiny["replica"].ran) == 5
    pd.testing.assert_frame_equal(tiny["replica"].leaderboard[metrics], tiny["first"].leaderboard[metrics])

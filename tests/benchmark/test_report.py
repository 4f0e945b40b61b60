"""The report on a fabricated store (no training): verdicts on planted differences, sections, missing cells, HTML."""

import json
import re
import shutil
import subprocess

import pandas as pd
import pytest

from benchmark.cli import main
from benchmark.report.document import build_report
from benchmark.report.results import load_results
from benchmark.plan.suite import load_suite
from tests.benchmark.report_store import CLASSES, fabricate
from tests.benchmark.suites import write_suite

SECTIONS = ("Protocol", "Leaderboard", "Missing cells", "Which source wins, which strategy wins", "Paired comparisons",
            "Average ranks and critical difference", "Per-class results and confusion matrices", "ROC curves", "Data efficiency", "Cost")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """5 folds x 2 fractions x 3 sources: `better` is planted better than `none`; `equal` is drawn like `none`.
    One cell of `none` FAILED, one of `equal` left RUNNING by a killed process."""
    work = tmp_path_factory.mktemp("report")
    path = write_suite(work, name="fab", folds=5, fractions=[0.5, 1.0],
                       sources={"none": {"weights": "scratch"}, "equal": {"weights": "scratch"}, "better": {"weights": "scratch"}})
    suite = load_suite(path)
    failed = next(c for c in suite.finetune_cells if c.source == "none" and c.fold == 0 and c.fraction == 1.0)
    running = next(c for c in suite.finetune_cells if c.source == "equal" and c.fold == 1 and c.fraction == 0.5)
    uri = f"sqlite:///{work / 'mlruns.db'}"
    parent = fabricate(uri, suite, {"none": 0.4, "equal": 0.4, "better": 0.95}, rows=200, failed={failed.hash}, running={running.hash})
    return {"work": work, "path": path, "suite": suite, "uri": uri, "parent": parent, "failed": failed, "running": running}


@pytest.fixture(scope="module")
def report(store):
    from mlflow.tracking import MlflowClient

    results = load_results(MlflowClient(store["uri"]), suite=store["suite"])
    return build_report(results, store["work"] / "out")


def test_planted_difference_is_significant_and_the_equal_source_is_not(report):
    wins = report.winners.set_index("within")
    for fraction in (0.5, 1.0):
        line = wins.loc[f"backbone=smallcnn, strategy=full, fraction={fraction}"]
        assert line["best"] == "better" and line["p_holm"] < 0.05 and line["verdict"] == "better is better than " + line["runner_up"]
        assert line["ci_low"] > 0
        assert set(line["significantly_better_than"].split(", ")) == {"scratch", "equal"}  # the suite's `none` source reads `scratch`
        ties = report.comparisons
        tie = ties[(ties["family"] == "source") & (ties["test"] == "corrected t-test") & ties["a"].str.contains(f"@{fraction:g}" if fraction != 1 else "full$")
                   & ties["a"].str.match("(scratch|equal)/") & ties["b"].str.match("(scratch|equal)/")]
        assert len(tie) == 1 and tie.iloc[0]["p_holm"] > 0.05 and not tie.iloc[0]["significant"]
    assert "no significant difference" not in set(report.winners["verdict"])  # every group here has a real winner


def test_holm_runs_over_the_family(report):
    from statsmodels.stats.multitest import multipletests

    t = report.comparisons[(report.comparisons["family"] == "source") & (report.comparisons["test"] == "corrected t-test")]
    assert len(t) == 6  # 3 pairs x 2 fractions
    assert t["p_holm"].tolist() == pytest.approx(multipletests(t["p_value"], method="holm")[1].tolist())
    assert {"Wilcoxon signed-rank", "corrected t-test"} <= set(report.comparisons["test"])
    assert report.comparisons["test"].str.startswith("McNemar").any()
    assert report.comparisons["effect_name"].notna().all()


def test_leaderboard_counts_only_finished_cells_and_shows_chance_floors(report, store):
    board = report.leaderboard.set_index("row")
    assert board.loc["scratch/smallcnn/full", "n"] == 4 and board.loc["scratch/smallcnn/full", "missing"] == 1
    assert board.loc["equal/smallcnn/full@0.5", "n"] == 4 and board.loc["equal/smallcnn/full@0.5", "missing"] == 1
    assert board.loc["better/smallcnn/full", "n"] == 5
    for metric in ("mcc", "f1", "rec", "prec", "auc", "acc_micro"):
        for part in ("mean", "std", "low", "high"):
            assert board[f"{metric}_{part}"].notna().all(), (metric, part)
    cells = pd.read_csv(report.out_dir / "cells.csv")
    better = cells[(cells["source"] == "better") & (cells["fraction"] == 1.0)]["mcc"]
    assert board.loc["better/smallcnn/full", "mcc_mean"] == pytest.approx(better.mean())
    floors = report.floors.set_index("row")
    assert floors.loc["chance: most_frequent", "mcc_mean"] == 0.0
    assert abs(floors.loc["chance: stratified", "mcc_mean"]) < 0.2
    assert floors.loc["chance: most_frequent", "n"] == 5  # one per (fold, seed) test split


def test_report_has_every_section_and_file(report):
    text = (report.out_dir / "report.md").read_text()
    for title in SECTIONS:
        assert f"## {title}" in text, title
    assert "chance: most_frequent" in text and "chance: stratified" in text
    for name in ("report.html", "leaderboard.csv", "comparisons.csv", "per_class.csv", "missing.csv", "chance_floors.csv",
                 "leaderboard_mcc.png", "roc_smallcnn.png", "data_efficiency.png", "quality_vs_cost.png", "ranks.png"):
        assert (report.out_dir / name).is_file(), name
    matrix = pd.read_csv(report.out_dir / "confusion_matrices" / "better_smallcnn_full.csv", index_col=0)
    assert list(matrix.index) == [f"true:{c}" for c in CLASSES] and int(matrix.to_numpy().sum()) == 5 * 200  # 5 folds x 200 test rows
    per_class = pd.read_csv(report.out_dir / "per_class.csv")
    assert set(per_class["class"]) == set(CLASSES)


def test_html_is_self_contained(report):
    html = (report.out_dir / "report.html").read_text()
    assert not re.search(r'(src|href)="(https?:)?//', html)  # nothing fetched from the network
    assert html.count('src="data:image/png;base64,') == len(re.findall(r"!\[", (report.out_dir / "report.md").read_text()))
    for title in SECTIONS:
        assert title.replace(",", ",") in html


def test_report_command_lists_failed_and_running_cells_as_missing(store, capsys):
    out_dir = store["work"] / "cli"
    assert main(["report", str(store["path"]), "--tracking-uri", store["uri"], "--out", str(out_dir)]) == 0
    out = capsys.readouterr().out
    assert "28 of 30 fine-tuning cells finished" in out
    assert re.search(r"missing: scratch/smallcnn/full fraction 1 fold 0 seed 0: FAILED: RuntimeError: CUDA out of memory", out)
    assert re.search(r"missing: equal/smallcnn/full fraction 0.5 fold 1 seed 0: RUNNING: left RUNNING", out)
    missing = pd.read_csv(out_dir / "missing.csv")
    assert sorted(missing["status"]) == ["FAILED", "RUNNING"]
    assert "## Missing cells" in (out_dir / "report.md").read_text()


def test_report_from_the_parent_run_alone(store, capsys):
    out_dir = store["work"] / "from_parent"
    assert main(["report", store["parent"], "--tracking-uri", store["uri"], "--out", str(out_dir)]) == 0
    out = capsys.readouterr().out
    assert "28 of 30 fine-tuning cells finished" in out and "FAILED" in out and "RUNNING" in out
    again = pd.read_csv(out_dir / "leaderboard.csv")
    first = pd.read_csv(store["work"] / "cli" / "leaderboard.csv")
    assert again["mcc_mean"].tolist() == pytest.approx(first["mcc_mean"].tolist())


def test_report_of_an_unknown_run_says_so(store, capsys):
    assert main(["report", "0" * 32, "--tracking-uri", store["uri"]]) == 2
    assert "not found" in capsys.readouterr().err


def test_ui_link_opens_the_suites_runs_table(store, capsys):
    from mlflow.tracking import MlflowClient

    assert main(["report", str(store["path"]), "--tracking-uri", store["uri"], "--ui-link", "http://127.0.0.1:5000"]) == 0
    experiment = MlflowClient(store["uri"]).get_experiment_by_name("medtl-fab")
    # workflowType: MLflow 3.5+ opens every experiment in its GenAI view without it; the shared view shows MCC columns.
    assert capsys.readouterr().out.strip() == (f"cells: http://127.0.0.1:5000/#/experiments/{experiment.experiment_id}/runs"
                                               "?workflowType=machine_learning&viewStateShareKey=medtl")
    assert experiment.tags.get("mlflow.experimentKind") == "custom_model_development"
    view = json.loads(experiment.tags["mlflow.sharedViewState.medtl"])
    assert view["orderByKey"] == "metrics.`test/mcc`" and "metrics.`test/mcc`" in view["selectedColumns"]


def test_html_renders_in_headless_chromium(report, tmp_path):
    binary = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if binary is None:
        pytest.skip("no chromium binary on PATH (apt-get install -y chromium); the HTML is checked without rendering above")
    shot = tmp_path / "report.png"
    subprocess.run([binary, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1280,2000",
                    f"--screenshot={shot}", (report.out_dir / "report.html").as_uri()], check=True, capture_output=True, timeout=120)
    from PIL import Image

    image = Image.open(shot).convert("L")
    assert image.size == (1280, 2000)
    # A rendered page: not blank, with dark text and the leaderboard figure's colours.
    histogram = image.histogram()
    assert sum(histogram[:80]) > 2000 and sum(histogram[250:]) > 0.3 * sum(histogram)


def test_flops_per_image_counts_a_convolution_by_hand():
    from torch import nn

    from benchmark.speed.cost import flops_per_image, model_cost

    # Conv 3 -> 8 channels, 3x3, same padding, 16 x 16 output: 2 FLOPs per multiply-add
    # x (3 * 3 * 3) multiply-adds per output value x 8 * 16 * 16 values = 110,592; then a linear 8 -> 2.
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 2, bias=False))
    assert flops_per_image(net, 16) == 2 * 27 * 8 * 16 * 16 + 2 * 8 * 2
    assert model_cost(net, 16) == {"cost/params": float(3 * 8 * 9 + 16), "cost/flops_per_image": float(110592 + 32)}


def test_pareto_front_keeps_only_undominated_rows():
    import numpy as np

    from benchmark.report.plots import pareto_front

    cost = np.array([1.0, 2.0, 2.0, 3.0, 4.0])
    quality = np.array([0.5, 0.4, 0.7, 0.6, 0.9])
    assert pareto_front(cost, quality).tolist() == [0, 2, 4]  # (2, .4) and (3, .6) are dominated by (2, .7)

"""What a reader of the report is told (issue 22): bounded intervals and axes, one AUC, honest cost plots, chance drawn
over seeds, degenerate rows, killed cells, per-strategy protocol, human headers, scratch naming, a 120-column table."""

import re

import numpy as np
import pandas as pd
import pytest

from benchmark.plan.suite import load_suite
from benchmark.report import plots
from benchmark.report.comparisons import NONE_MARKER, winners
from benchmark.report.document import build_report, macro_roc
from benchmark.report.leaderboard import TERMINAL_WIDTH, leaderboard, to_markdown
from benchmark.report.protocol import importance_caveat, selection_text
from benchmark.report.results import load_results
from tests.benchmark.report_store import fabricate
from tests.benchmark.suites import write_suite


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """3 folds, strategies full + svm: `none` (the scratch alias) predicts one class everywhere, `better` learns; the
    pretraining cell of `gen-general` was KILLED, so its fine-tuning cells never ran; one `better` svm cell was KILLED."""
    work = tmp_path_factory.mktemp("reader")
    path = write_suite(work, name="reader", folds=3, strategies=["full", "svm"],
                       sources={"none": {"weights": "scratch"}, "better": {"weights": "scratch"},
                                "gen-general": {"pretrain": {"dataset": "gen-general", "options": {"size": 32}}}})
    suite = load_suite(path)
    pretrain = next(c for c in suite.cells if c.stage == "pretrain")
    killed = next(c for c in suite.finetune_cells if c.source == "better" and c.strategy == "svm" and c.fold == 2)
    uri = f"sqlite:///{work / 'mlruns.db'}"
    fabricate(uri, suite, {"none": 0.3, "better": 0.95, "gen-general": 0.9}, rows=120, killed={pretrain.hash, killed.hash},
              constant={"none"})
    from mlflow.tracking import MlflowClient

    results = load_results(MlflowClient(uri), suite=suite)
    return {"suite": suite, "results": results, "report": build_report(results, work / "out"), "pretrain": pretrain, "killed": killed}


def test_intervals_and_plot_axes_stay_in_the_metrics_range(store, monkeypatch, tmp_path):
    board = store["report"].leaderboard
    assert (board["mcc_low"] >= -1).all() and (board["mcc_high"] <= 1).all()
    for metric in ("f1", "rec", "prec", "spec", "acc", "auc", "acc_micro"):
        assert (board[f"{metric}_low"].dropna() >= 0).all() and (board[f"{metric}_high"].dropna() <= 1).all(), metric
    # `better` scores ~0.95 with a spread: its unclipped t-interval of AUC / accuracy runs past 1 on 3 folds
    figures = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: figures.append(fig) or path)
    plots.leaderboard_bars(board, store["report"].floors, tmp_path / "bars.png")
    plots.quality_vs_cost(board, "flops_per_image_mean", "FLOPs per image", tmp_path / "cost.png")
    assert figures[0].axes[0].get_xlim() == (-1.0, 1.0)
    assert figures[1].axes[0].get_ylim() == (-1.0, 1.0)
    assert "clipped to the metric's range" in (store["report"].out_dir / "report.md").read_text()


def test_cost_plot_has_no_offset_and_starts_at_zero(tmp_path, monkeypatch):
    figures = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: figures.append(fig) or path)
    board = pd.DataFrame({"row": ["a/resnet18/full", "b/resnet18/full"], "flops_per_image_mean": [2.9963e8, 2.9964e8],
                          "mcc_mean": [0.5, 0.6], "mcc_low": [0.4, 0.5], "mcc_high": [0.6, 0.7]})
    plots.quality_vs_cost(board, "flops_per_image_mean", "FLOPs per image", tmp_path / "cost.png")
    ax = figures[0].axes[0]
    figures[0].canvas.draw()
    assert ax.get_xlim()[0] == 0 and ax.xaxis.get_offset_text().get_text() == ""
    labels = [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
    assert any(label.endswith(" M") for label in labels) and not any("e" in label for label in labels), labels
    assert ax.get_legend() is not None and "1  a/resnet18/full" in [t.get_text() for t in ax.get_legend().get_texts()]


def test_feature_strategies_show_no_training_speed(store):
    board = store["report"].leaderboard.set_index("row")
    assert np.isnan(board.loc["better/smallcnn/svm", "train_ips_mean"])
    assert board.loc["better/smallcnn/full", "train_ips_mean"] > 0
    html = (store["report"].out_dir / "report.html").read_text()
    cost = html[html.index(">Cost<"):]
    assert re.search(r"<td[^>]*>better/smallcnn/svm</td>\s*<td[^>]*>[^<]*</td>\s*<td[^>]*>n/a</td>", cost), cost[:3000]


def test_stratified_chance_is_drawn_over_seeds(store):
    floors = store["report"].floors.set_index("row")
    assert floors.loc["chance: stratified", "n"] == 3 * 20  # 3 folds x 20 draws
    assert floors.loc["chance: stratified", "mcc_std"] > 0.01
    assert floors.loc["chance: most_frequent", "n"] == 3 and floors.loc["chance: most_frequent", "mcc_std"] == 0


def test_roc_legend_gives_the_leaderboards_macro_auc(store, monkeypatch, tmp_path):
    from benchmark.report import document

    seen = {}
    monkeypatch.setattr(plots, "roc_curves", lambda curves, path, title, auc_name="AUC": seen.update(curves=curves, name=auc_name) or path)
    board = store["report"].leaderboard
    document.roc_images(store["results"], board, tmp_path)
    for label, (_, _, auc) in seen["curves"].items():
        assert auc == pytest.approx(float(board.loc[board["row"] == label, "auc_mean"].iloc[0]))
    assert "macro" in seen["name"]


def test_macro_roc_curve_has_the_macro_auc():
    from sklearn.metrics import auc, roc_auc_score

    rng = np.random.default_rng(1)
    targets = rng.integers(0, 4, 400)
    probs = rng.dirichlet(np.ones(4), 400)
    probs[np.arange(400), targets] += rng.random(400)
    probs /= probs.sum(1, keepdims=True)
    fpr, tpr = macro_roc(targets, probs)
    assert auc(fpr, tpr) == pytest.approx(roc_auc_score(targets, probs, multi_class="ovr", average="macro"), abs=0.005)


def test_degenerate_row_is_marked_and_beating_it_says_so(store):
    report = store["report"]
    board = report.leaderboard.set_index("row")
    assert bool(board.loc["scratch/smallcnn/full", "degenerate"]) and not bool(board.loc["better/smallcnn/full", "degenerate"])
    html = (report.out_dir / "report.html").read_text()
    assert re.search(r"<td[^>]*>scratch/smallcnn/full</td>\s*<td[^>]*>degenerate: predicts one class</td>", html)
    line = report.winners[(report.winners["question"] == "which source wins") & report.winners["within"].str.contains("strategy=full")].iloc[0]
    assert line["best"] == "better" and "scratch is degenerate: predicts one class" in line["verdict"]
    assert "degenerate" in line["significantly_better_than"] or line["significantly_better_than"] == NONE_MARKER
    terminal = to_markdown(report.leaderboard, "Leaderboard: reader")
    assert re.search(r"scratch/smallcnn/full †", terminal) and "†: degenerate: predicts one class" in terminal


def test_killed_cells_are_listed_with_their_state(store):
    missing = store["results"].missing
    pre = missing[missing["stage"] == "pretrain"]
    assert len(pre) == 1 and pre.iloc[0]["status"] == "KILLED" and pre.iloc[0][["source", "strategy"]].tolist() == ["gen-general", "pretrain"]
    waiting = missing[(missing["stage"] == "finetune") & (missing["source"] == "gen-general")]
    assert len(waiting) == 6 and (waiting["status"] == "NOT RUN").all()  # 2 strategies x 3 folds
    assert waiting["error"].str.contains("pretraining cell (gen-general/smallcnn), which is KILLED", regex=False).all()
    killed = missing[(missing["status"] == "KILLED") & (missing["stage"] == "finetune")]
    assert killed[["source", "strategy", "fold"]].values.tolist() == [["better", "svm", 2]]
    html = (store["report"].out_dir / "report.html").read_text()
    assert len(re.findall(r"<td[^>]*>KILLED</td>", html)) == 2
    assert store["report"].leaderboard.set_index("row").loc["better/smallcnn/svm", "missing"] == 1


def test_protocol_is_stated_per_strategy(store):
    text = selection_text(store["results"].cells)
    assert re.search(r"full: `hparams.select` = \w+ \(", text) and "svm: no training loop" in text
    assert not re.search(r"select` = \w+, \w+", text)  # no list of values that mixes strategies
    cells = pd.DataFrame({"source": ["a", "b"], "backbone": ["x", "x"], "strategy": ["full", "full"], "fraction": [1.0, 1.0],
                          "select": ["last", "mcc"], "epochs_trained": [3, 3]})
    assert "`hparams.select` = last for a/x/full; mcc for b/x/full" in selection_text(cells)


def test_friedman_without_a_test_says_why(store):
    text = (store["report"].out_dir / "report.md").read_text()
    ranks = text[text.index("## Average ranks"):text.index("## Per-class")]
    assert "nan" not in ranks and "No Friedman test: it needs at least 3 compared methods (this suite has 2" in ranks


def test_few_trials_importances_carry_a_caveat():
    assert "only 2 complete trial(s), fewer than 10" in importance_caveat({"medtl.trials.COMPLETE": "2"}, "abc")
    assert "rest on only" not in importance_caveat({"medtl.trials.COMPLETE": "25"}, "abc")
    assert "no parameter importances" in importance_caveat({"medtl.trials.COMPLETE": "0", "medtl.plots": "not drawn: no complete trial"}, "x")


def test_headers_are_human_in_html_and_snake_case_in_csv(store):
    out = store["report"].out_dir
    html = (out / "report.html").read_text()
    headers = re.findall(r"<th[^>]*>([^<]*)</th>", html)
    assert "p (Holm)" in headers and "fit time (s)" in headers and "training img/s" in headers
    assert not [h for h in headers if re.fullmatch(r"[a-z]+(_[a-z]+)+", h)], headers
    assert {"p_holm", "effect_name"} <= set(pd.read_csv(out / "comparisons.csv").columns)
    assert {"fit_seconds_mean", "train_ips_mean", "mcc_low"} <= set(pd.read_csv(out / "leaderboard.csv").columns)


def test_scratch_source_is_named_scratch_and_empty_lists_are_marked(store):
    report = store["report"]
    assert "scratch/smallcnn/full" in set(report.leaderboard["row"]) and not report.leaderboard["source"].eq("none").any()
    assert "none" not in set(report.winners["significantly_better_than"])
    board = pd.DataFrame({"row": ["a/x/full", "b/x/full"], "source": ["a", "b"], "backbone": ["x", "x"], "strategy": ["full", "full"],
                          "fraction": [1.0, 1.0], "mcc_mean": [0.5, 0.4]})
    compared = pd.DataFrame({"family": ["source"], "a": ["a/x/full"], "b": ["b/x/full"], "source_a": ["a"], "source_b": ["b"],
                             "test_family": ["corrected t-test"], "low": [-0.1], "high": [0.3], "p_holm": [0.4], "significant": [False]})
    assert winners(board, compared, "corrected t-test").iloc[0]["significantly_better_than"] == NONE_MARKER


def test_terminal_leaderboard_fits_120_columns_with_long_names():
    rows = []
    for i, source in enumerate(["imagenet-then-lapgyn4-and-cataract101-double-transfer", "scratch", "medical-self-supervised-moco-v3"]):
        for backbone in ("inception_resnet_v2.tf_ens_adv_in1k", "convnext_small.fb_in22k_ft_in1k_384"):
            rows.append({"source": source, "backbone": backbone, "strategy": "layerwise", "fraction": 0.25, "n": 15, "missing": i,
                         **{f"{m}_{p}": v for m in ("mcc", "f1", "rec", "prec", "spec", "acc", "auc", "acc_micro")
                            for p, v in (("mean", 0.5 + i / 10), ("std", 0.1), ("low", -0.123), ("high", 0.987))},
                         "fps_mean": 123456.0})
    board = pd.DataFrame(rows)
    text = to_markdown(board, "Leaderboard: a-suite", report_dir="reports/a-suite")
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= TERMINAL_WIDTH, max(lines, key=len)
    assert lines[-1] == "Every metric with std and CI: reports/a-suite/leaderboard.csv and reports/a-suite/report.html."
    table = [line for line in lines if line.startswith("|")]
    assert len(table) == 2 + len(rows) and "-0.123" in table[2] and "123456" in table[2]
    assert len({line.split("|")[2].strip() for line in table[2:]}) == len(rows)  # rows still told apart


def test_leaderboard_gives_no_training_speed_to_feature_strategies():
    cells = pd.DataFrame({"source": ["s"] * 4, "backbone": ["b"] * 4, "strategy": ["full", "full", "svm", "svm"], "fraction": [1.0] * 4,
                          "fold": [0, 1, 0, 1], "seed": 0, "mcc": [0.2, 0.3, 0.4, 0.5], "train_rows": 100.0,
                          "epochs_trained": [2, 2, 0, 0], "fit_seconds": 4.0})
    board = leaderboard(cells).set_index("strategy")
    assert board.loc["full", "train_ips_mean"] == 50.0 and np.isnan(board.loc["svm", "train_ips_mean"])

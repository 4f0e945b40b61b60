"""The suite report: leaderboard with CIs and chance floors, paired tests, ranks, per-class results, curves, cost.

    medtl report benchmark/suites/smoke.yaml [--out DIR]    # or: medtl report PARENT_RUN_ID
    medtl benchmark benchmark/suites/smoke.yaml             # writes the same report at the end

Everything is rebuilt from MLflow (benchmark.report.results): metrics, params and the cells' artifacts
`test/predictions.csv` and `test/confusion_matrix.csv`. Writes report.md, a self-contained
report.html, leaderboard.csv, cells.csv, missing.csv, comparisons.csv, per_class.csv and PNGs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.report import plots
from benchmark.report import statistics as st
from benchmark.report.comparisons import DEGENERATE, NO_DIFFERENCE, comparisons, primary_test, row_label, winners
from benchmark.report.floors import chance_floors, degenerate_rows, row_cells
from benchmark.report.leaderboard import CI_NOTE, format_leaderboard, full_markdown, leaderboard, trains
from benchmark.report.protocol import protocol_text
from benchmark.report.external import external_section
from benchmark.report.leakage import leakage_section
from benchmark.report.power import power_section
from benchmark.report.sequential import sequential_section
from benchmark.report.calibration import calibration_section
from benchmark.report.transferability import transferability_section
from benchmark.report.render import Section, file_slug, to_html
from benchmark.report.render import to_markdown as sections_to_markdown
from benchmark.report.results import ROW_KEYS, SuiteResults

def per_class_and_confusion(results: SuiteResults, board: pd.DataFrame, out_dir: Path) -> tuple[pd.DataFrame, list[tuple[str, Path]]]:
    """Confusion matrices summed over folds x seeds per row (CSV + PNG) and the per-class metrics they give."""
    folder = out_dir / "confusion_matrices"
    folder.mkdir(exist_ok=True)
    per_class, images = [], []
    for _, row in board.iterrows():
        total, names = None, None
        for run_id in row_cells(results.cells, row)["run_id"]:
            matrix = results.confusion(run_id)
            if matrix is None:
                continue
            total = matrix if total is None else total.add(matrix, fill_value=0)
        if total is None:
            continue
        names = [c.removeprefix("pred:") for c in total.columns]
        slug = file_slug(row["row"])
        total.to_csv(folder / f"{slug}.csv")
        m = total.to_numpy(float)
        images.append((f"{row['row']}: confusion matrix summed over {row['n']} cells",
                       plots.confusion_matrix(m.astype(int), names, folder / f"{slug}.png", f"{row['row']} (sum over folds x seeds)")))
        tp, support, predicted = np.diag(m), m.sum(1), m.sum(0)
        tn = m.sum() - support - predicted + tp
        with np.errstate(invalid="ignore", divide="ignore"):
            prec, rec = tp / predicted, tp / support
            f1 = 2 * prec * rec / (prec + rec)
            spec = tn / (m.sum() - support)
        for i, name in enumerate(names):
            per_class.append({"row": row["row"], "class": name, "support": int(support[i]), "precision": prec[i], "recall": rec[i],
                              "f1": f1[i], "specificity": spec[i]})
    return pd.DataFrame(per_class), images


AUC_LABEL = "AUC: macro one-vs-rest, mean over the row's cells (the leaderboard's AUC)"


def macro_roc(targets: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The macro-average one-vs-rest ROC curve (scikit-learn's recipe: each class's curve interpolated on the union of
    their false-positive rates, the true-positive rates averaged); for two classes, the curve of class 1."""
    from sklearn.metrics import roc_curve

    if probs.shape[1] == 2:
        fpr, tpr, _ = roc_curve(targets, probs[:, 1])
        return fpr, tpr
    per_class = [roc_curve(targets == k, probs[:, k]) for k in range(probs.shape[1]) if 0 < (targets == k).sum() < len(targets)]
    grid = np.unique(np.concatenate([fpr for fpr, _, _ in per_class]))
    return grid, np.mean([np.interp(grid, fpr, tpr) for fpr, tpr, _ in per_class], axis=0)


def roc_images(results: SuiteResults, board: pd.DataFrame, out_dir: Path) -> list[tuple[str, Path]]:
    """One plot per backbone: each row's macro-average ROC curve on its pooled test predictions (first seed, all folds);
    the legend gives the leaderboard's AUC, so one AUC definition is shown everywhere."""
    images = []
    for backbone, rows in board.groupby("backbone", sort=False):
        curves = {}
        for _, row in rows.iterrows():
            cells = row_cells(results.cells, row)
            cells = cells[cells["seed"] == cells["seed"].min()]
            frames = [results.predictions(r) for r in cells["run_id"]]
            frames = [f for f in frames if f is not None and "target" in f]
            if not frames:
                continue
            pooled = pd.concat(frames, ignore_index=True)
            probs = pooled[[c for c in pooled.columns if c.startswith("p:")]].to_numpy(float)
            fpr, tpr = macro_roc(pooled["target"].to_numpy(int), probs)
            curves[row["row"]] = (fpr, tpr, row["auc_mean"])
        if curves:
            kind = "binary" if probs.shape[1] == 2 else "macro-average one-vs-rest"
            images.append((f"ROC curves, {backbone}: {kind} curves of the pooled test folds of the first seed; legend: {AUC_LABEL}",
                           plots.roc_curves(curves, out_dir / f"roc_{file_slug(backbone)}.png", f"{backbone}: ROC ({kind})",
                                            "AUC macro, mean over cells")))
    return images


def rank_section(board: pd.DataFrame, out_dir: Path) -> Section:
    section = Section("Average ranks and critical difference")
    keys = [k for k in ROW_KEYS if k in board and k != "source"]
    scores = board.pivot_table(index=keys, columns="source", values="mcc_mean") if len(board) else pd.DataFrame()
    if scores.shape[1] < 2 or scores.dropna().shape[0] < 2:
        section.paragraphs.append(f"Ranks need at least 2 sources over at least 2 (backbone, strategy, fraction) settings; this suite "
                                  f"has {scores.shape[1]} source(s) over {scores.dropna().shape[0]} complete setting(s).")
        return section
    ranking = st.average_ranks(scores)
    absent = st.friedman_absent_reason(scores.shape[1], ranking.blocks)
    friedman = f"Friedman p = {ranking.friedman_p:.3g}" if not absent else absent[0].upper() + absent[1:]
    section.paragraphs.append(
        f"Sources ranked by mean MCC within each of {ranking.blocks} settings ({', '.join(keys)}); 1 = best. {friedman}; Nemenyi critical difference {ranking.critical_difference:.2f} at alpha {st.ALPHA} "
        "(Demšar 2006): mean ranks closer than that are not distinguishable." + (
            " Few settings: the test has little power here." if ranking.blocks < 5 else ""))
    section.tables.append(("Average rank per source", ranking.ranks.rename("average rank").reset_index()))
    if len(ranking.nemenyi):
        section.images.append(("Critical-difference diagram", plots.rank_diagram(ranking.ranks, ranking.nemenyi, ranking.critical_difference,
                                                                                  out_dir / "ranks.png", "Sources by average MCC rank")))
    return section


@dataclass
class Report:
    out_dir: Path
    leaderboard: pd.DataFrame
    floors: pd.DataFrame
    comparisons: pd.DataFrame
    winners: pd.DataFrame
    markdown: str
    paths: list[Path] = field(default_factory=list)


def build_report(results: SuiteResults, out_dir: Path) -> Report:
    """Compute every table and figure of the report and write them into `out_dir`."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cells = results.cells
    board = leaderboard(cells)
    if "fraction" not in board and len(board):
        board.insert(3, "fraction", 1.0)
    if len(board):
        board.insert(0, "row", [row_label(r) for r in board.to_dict("records")])
        finetune_missing = results.missing[results.missing["stage"] != "pretrain"]
        missing_counts = finetune_missing.groupby(list(ROW_KEYS)).size()
        board["missing"] = [int(missing_counts.get(tuple(r[k] for k in ROW_KEYS), 0)) for r in board.to_dict("records")]
        board["degenerate"] = degenerate_rows(results, board)
    floors = chance_floors(results) if len(cells) else pd.DataFrame()
    compared = comparisons(results, board) if len(board) else pd.DataFrame()
    wins = winners(board, compared, primary_test(cells)) if len(board) else pd.DataFrame()
    sections = [Section("Protocol", protocol_text(results))]

    lead = Section("Leaderboard", [f"Mean ± sample std [{CI_NOTE}]. MCC (R_K): the multiclass Matthews "
                                   "statistic (Gorodkin); macro: one-vs-rest per class, averaged; micro (Medico): one-vs-rest "
                                   "counts pooled over classes, then the metric, as the Medico 2018 organisers scored; "
                                   "accuracy: correct / N; positive: the suite's positive class alone. Chance rows: scikit-learn's DummyClassifier scored on the same test "
                                   "rows with the same metric code (stratified: 20 random draws per fold, n counts the draws). "
                                   "missing: cells without results, not in n. note: a row whose every cell predicted one class "
                                   "for every test image is marked so: it learnt nothing, and beating it is no finding."])
    shown = pd.concat([board, floors], ignore_index=True) if len(floors) else board
    if len(shown):
        table = format_leaderboard(shown)
        table.insert(0, "row", shown["row"])
        if len(board) and board["degenerate"].any():
            table.insert(1, "note", [DEGENERATE if d else "" for d in shown["degenerate"].eq(True)])
        lead.tables.append(("", table.drop(columns=[c for c in ROW_KEYS if c in table])))
        lead.images.append(("MCC per row with 95 % CI; dashed/dotted: chance floors", plots.leaderboard_bars(board, floors, out_dir / "leaderboard_mcc.png")))
    else:
        lead.paragraphs.append("No finished cells.")
    sections.append(lead)

    missing = Section("Missing cells", ["Cells without a FINISHED run are not in any n above; each is listed with the reason."
                                        + ("" if results.expected_known else " Rebuilt from a parent run id without the suite file: "
                                           "only cells that started are known.")])
    if len(results.missing):
        shown_missing = results.missing.drop(columns="run_id")
        if (shown_missing["stage"] == "pretrain").any():
            missing.paragraphs.append("A pretraining cell that did not finish is listed first, with its state: it is why the "
                                      "fine-tuning cells that need its weights did not run.")
        missing.tables.append(("", shown_missing))
    else:
        missing.paragraphs.append("None: every expected cell finished.")
    sections.append(missing)

    verdicts = Section("Which source wins, which strategy wins", [
        f"Best row by mean MCC against the runner-up: margin (MCC), its 95 % CI and Holm-adjusted p of the {primary_test(cells)}; "
        f"'{NO_DIFFERENCE}' where the adjusted p is not below {st.ALPHA}."])
    verdicts.tables.append(("", wins))
    for family in ("source", "strategy"):
        if not len(wins) or not (wins["question"] == f"which {family} wins").any():
            verdicts.paragraphs.append(f"Which {family} wins: not asked, this suite has one {family} per setting.")
    sections.append(verdicts)

    paired = Section("Paired comparisons", [
        "Rows paired on the (fold, seed) cells both finished. Corrected resampled t-test (Nadeau & Bengio 2003) and Wilcoxon "
        "signed-rank on per-cell MCC; McNemar on per-image correctness and DeLong on AUC (binary tasks) over the pooled test "
        "predictions of the first shared seed. Difference = a - b; effect sizes: Cohen's d_z, rank-biserial r, odds ratio, AUC difference."])
    if len(compared):
        paired.tables.append(("", compared[["family", "a", "b", "test", "n", "difference", "low", "high", "effect_name", "effect",
                                             "p_value", "p_holm", "significant"]]))
    sections.append(paired)
    power, power_table = power_section(cells, board, compared)
    leakage, leakage_rows, leakage_cells = leakage_section(results, board)
    sections += [power, sequential_section(cells, results.rounds), leakage]
    sections.append(external_section(results, board))  # in-domain vs external scores, rank agreement (target.external)
    sections.append(rank_section(board, out_dir))
    sections.append(transferability_section(results, board, compared, primary_test(cells)))  # LogME / H-score vs the order

    per_class, confusion_images = per_class_and_confusion(results, board, out_dir) if len(board) else (pd.DataFrame(), [])
    classes = Section("Per-class results and confusion matrices", [
        "Confusion matrices summed over folds x seeds (rows: true class, columns: predicted), and the per-class metrics they give; "
        "CSVs in confusion_matrices/ and per_class.csv."], [("", per_class)], confusion_images)
    sections.append(classes)
    sections.append(calibration_section(results, board, out_dir))  # ECE, Brier, NLL before/after T; reliability diagrams
    sections.append(Section("ROC curves", [] if len(board) else ["No predictions."], [], roc_images(results, board, out_dir) if len(board) else []))

    efficiency = Section("Data efficiency")
    if len(board) and board["fraction"].nunique() > 1:
        efficiency.paragraphs.append("MCC against the fraction of the training set, per source x strategy, with 95 % CI bands.")
        efficiency.images.append(("Data-efficiency curves", plots.data_efficiency(board, out_dir / "data_efficiency.png")))
    else:
        efficiency.paragraphs.append("One training fraction in this suite: add several to `fractions` for data-efficiency curves.")
    sections.append(efficiency)

    cost = Section("Cost", ["Training wall time per cell (fit_seconds), training images per second (train rows x epochs / fit "
                            "time, validation passes included), inference images per second (model forward, conditions in each "
                            "run's throughput.* tags), parameters and FLOPs per image (torch.utils.flop_counter)."])
    if len(board):
        cost_table = board[["row", "fit_seconds_mean", "fps_mean", "params_mean", "flops_per_image_mean", "mcc_mean"]].copy()
        if "train_ips_mean" in board:  # n/a, not 0 or blank: svm and vlad have no training loop to time
            cost_table.insert(2, "train_ips_mean", [f"{v:.0f}" if pd.notna(v) else ("n/a" if not trains(s) else "")
                                                    for v, s in zip(board["train_ips_mean"], board["strategy"])])
        cost.tables.append(("", cost_table.rename(columns=lambda c: c.removesuffix("_mean"))))
        column, label = ("flops_per_image_mean", "FLOPs per image") if board["flops_per_image_mean"].notna().any() else ("fps_mean", "inference images/s")
        if column == "fps_mean":
            board["inference_s_per_image"] = 1.0 / board["fps_mean"]
            column, label = "inference_s_per_image", "inference seconds per image"
        cost.images.append(("MCC against inference cost; red: the Pareto front", plots.quality_vs_cost(board, column, label, out_dir / "quality_vs_cost.png")))
    sections.append(cost)

    title = f"medtl report: {results.name}"
    markdown = sections_to_markdown(title, sections)
    paths = [out_dir / "report.md", out_dir / "report.html", out_dir / "leaderboard.csv", out_dir / "leaderboard.md",
             out_dir / "cells.csv", out_dir / "missing.csv", out_dir / "comparisons.csv", out_dir / "per_class.csv",
             out_dir / "chance_floors.csv"]
    paths[0].write_text(markdown)
    paths[1].write_text(to_html(title, sections))
    board.to_csv(paths[2], index=False)  # the rows only; chance floors in their own file
    paths[3].write_text(full_markdown(board, f"Leaderboard: {results.name}"))
    cells.to_csv(paths[4], index=False)
    results.missing.to_csv(paths[5], index=False)
    compared.to_csv(paths[6], index=False)
    per_class.to_csv(paths[7], index=False)
    floors.to_csv(paths[8], index=False)
    for name, frame in (("power.csv", power_table), ("leakage.csv", leakage_rows), ("leakage_cells.csv", leakage_cells)):
        frame.to_csv(out_dir / name, index=False)
        paths.append(out_dir / name)
    paths += [p for p in (out_dir / "calibration.csv",) if p.exists()]
    paths += sorted(out_dir.glob("*.png")) + sorted((out_dir / "confusion_matrices").glob("*"))
    return Report(out_dir, board, floors, compared, wins, markdown, paths)


def report_suite(client, suite, out_dir: Path, parent_run_id: str | None = None) -> Report:
    """Load the suite's results from MLflow, write the report, and log the folder to `parent_run_id` when given."""
    from benchmark.report.results import load_results

    report = build_report(load_results(client, suite=suite), out_dir)
    if parent_run_id:
        client.log_artifacts(parent_run_id, str(out_dir), "report")
    return report

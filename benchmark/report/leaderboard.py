"""The leaderboard: one row per (source, backbone, strategy[, fraction]) with mean, std and 95 % CI per metric.

Built from the FINISHED cell runs; the runner prints it after the last cell (`to_markdown`: a compact table
that fits a 120-column terminal) and `benchmark.report.document` puts it, every metric, at the top of the
full report. leaderboard.csv keeps every column, in snake_case.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.report import statistics as st
from benchmark.report.results import METRIC_RANGE, METRICS, ROW_KEYS, registered, row_strategy, source_name
from tracking.naming import EXTERNAL

# Each name says how it is averaged (benchmark.report.results.METRICS): R_K, macro, micro (Medico 2018), positive class.
COLUMN_NAMES = {"mcc": "MCC (R_K)", "f1": "F1 macro", "rec": "REC macro", "prec": "PREC macro", "spec": "SPEC macro",
                "acc": "ACC macro", "auc": "AUC macro", "acc_micro": "accuracy", "micro_mcc": "MCC micro (Medico)",
                "micro_f1": "F1 micro (Medico)", "micro_spec": "SPEC micro (Medico)", "micro_acc": "ACC micro (Medico)",
                "pos_rec": "REC positive", "pos_prec": "PREC positive", "pos_f1": "F1 positive"}
# The printed table's metrics besides MCC: the ones a reader of a medical-imaging paper looks for first
# (F1 and AUC macro; plain accuracy). The others are in leaderboard.csv and report.html.
COMPACT_METRICS = {"f1": "F1", "auc": "AUC", "acc_micro": "Accuracy"}  # the notes below the table say macro
TERMINAL_WIDTH = 120
DEGENERATE = "degenerate: predicts one class"
CI_NOTE = ("95 % CI: t-interval over folds x seeds, clipped to the metric's range (MCC [-1, 1], the others [0, 1]), "
           "so a bound at the end of the range is a clip, not an estimate")


def trains(strategy: str, epochs_trained=np.nan) -> bool:
    """Whether `strategy` runs a training loop (svm and vlad fit on frozen features: no epochs, no training img/s).
    An unregistered name (a store written by another version) is judged by its cells' epochs."""
    from tasks.training.strategies import get_strategy

    try:
        return bool(get_strategy(registered(strategy)).trains)
    except Exception:  # noqa: BLE001 - unknown name: the registry's own error says which names exist; here we only guess
        return bool(np.nan_to_num(epochs_trained) > 0)


def cell_results(runs: pd.DataFrame) -> pd.DataFrame:
    """Finished fine-tuning runs (a `runs_frame`) as one row per cell: keys, fold, seed, metrics."""
    if runs.empty:
        return pd.DataFrame()
    variants = runs["params.variant"].fillna("") if "params.variant" in runs else pd.Series("", index=runs.index)
    frame = pd.DataFrame({
        "source": runs["params.source"].map(source_name), "backbone": runs["params.backbone"],
        "strategy": [row_strategy({"strategy": s, "variant": v}) for s, v in zip(runs["params.strategy"], variants)],
        "fraction": runs["params.fraction"].astype(float), "fold": runs["params.fold"].astype(int),
        "seed": runs["params.seed"].astype(int), "run_id": runs["run_id"],
    })
    for metric in (*METRICS, "fps"):
        column = f"metrics.test/{metric}"
        frame[metric] = runs[column].astype(float) if column in runs else np.nan
    return frame


def leaderboard(cells: pd.DataFrame) -> pd.DataFrame:
    """One row per (source, backbone, strategy[, fraction]): n, mean / std / 95 % CI per metric; best MCC first."""
    if cells.empty:
        return pd.DataFrame()
    keys = list(ROW_KEYS)
    grouped = cells.groupby(keys, sort=False)
    rows = []
    for key, group in grouped:
        row = dict(zip(keys, key), n=len(group))
        for metric in METRICS:
            s = st.mean_ci(group[metric] if metric in group else [], bounds=METRIC_RANGE[metric])
            row.update({f"{metric}_mean": s.mean, f"{metric}_std": s.std, f"{metric}_low": s.low, f"{metric}_high": s.high})
        for column in (c for c in group if c.startswith(f"{EXTERNAL}/") and c.count("/") == 2 and c.endswith("/mcc")):  # external sets
            row[f"{column}_mean"] = group[column].mean()
        for extra in ("fps", "fit_seconds", "params", "flops_per_image"):
            row[f"{extra}_mean"] = group[extra].mean() if extra in group else np.nan
        if {"train_rows", "epochs_trained", "fit_seconds"} <= set(group):
            # NaN (shown n/a), not 0, for a strategy without a training loop: it has no training speed at all.
            row["train_ips_mean"] = ((group["train_rows"] * group["epochs_trained"] / group["fit_seconds"]).mean()
                                     if trains(key[2], group["epochs_trained"].max()) else np.nan)
        rows.append(row)
    table = pd.DataFrame(rows).sort_values("mcc_mean", ascending=False, kind="stable").reset_index(drop=True)
    if table["fraction"].nunique() == 1:
        table = table.drop(columns="fraction")  # one fraction: the column says nothing
    return table


def _num(value: float) -> str:
    """Three decimals, and no "-0.000" for a value that rounds to zero from below."""
    text = f"{value:.3f}"
    return "0.000" if text == "-0.000" else text


def _cell_text(mean, std, low, high) -> str:
    if pd.isna(mean):
        return "n/a"
    text = _num(mean)
    if pd.notna(std):
        text += f" ± {_num(std)}"
    if pd.notna(low):
        text += f" [{_num(low)}, {_num(high)}]"
    return text


def format_leaderboard(table: pd.DataFrame) -> pd.DataFrame:
    """Human columns: `MCC` as '0.812 ± 0.034 [0.770, 0.854]' (mean ± std [95 % CI])."""
    if table.empty:
        return table
    keys = [c for c in (*ROW_KEYS,) if c in table]
    out = table[keys].copy()
    for metric in METRICS:
        if f"{metric}_mean" in table and table[f"{metric}_mean"].notna().any():  # no column for a metric no cell has
            out[COLUMN_NAMES[metric]] = [_cell_text(*v) for v in table[[f"{metric}_{s}" for s in ("mean", "std", "low", "high")]].itertuples(index=False)]
    if "fraction" in out and out["fraction"].nunique() <= 1:
        out = out.drop(columns="fraction")
    for column in (c for c in table if c.startswith(f"{EXTERNAL}/") and c.count("/") == 2 and c.endswith("/mcc_mean")):
        out[f"MCC {column.split('/')[1]}"] = ["n/a" if pd.isna(v) else f"{v:.3f}" for v in table[column]]  # beside in-domain
    if "fps_mean" in table:
        out["FPS"] = ["" if pd.isna(v) else f"{v:.0f}" for v in table["fps_mean"]]
    out["n"] = table["n"]
    if "missing" in table:
        out["missing"] = table["missing"]
    return out


def _shorten(label: str, width: int) -> str:
    """`label` cut to `width` characters part by part ("source/backbone/strategy"): the longest part loses its end
    first (marked "…"), so every part keeps its start and rows stay told apart by source, backbone and strategy."""
    parts = label.split("/")
    while len("/".join(parts)) > width:
        longest = max(range(len(parts)), key=lambda i: len(parts[i]))
        if len(parts[longest]) <= 4:
            break  # nothing left to cut readably
        parts[longest] = parts[longest].rstrip("…")[:-1] + "…"
    return "/".join(parts)


def _label(row) -> str:
    return row["row"] if "row" in row and isinstance(row["row"], str) else "/".join(
        str(row[k]) for k in ("source", "backbone", "strategy")) + (f"@{row['fraction']:g}" if row.get("fraction", 1.0) != 1.0 else "")


def compact_table(table: pd.DataFrame, width: int = TERMINAL_WIDTH) -> str:
    """The leaderboard as a Markdown table at most `width` characters wide: rank, row, MCC mean [95 % CI], COMPACT_METRICS,
    FPS, n (and missing, where any cell is). Row labels are cut in the middle to fit; the rank keeps cut ones distinct."""
    from tabulate import tabulate

    records = table.to_dict("records")
    columns = {"#": [str(i + 1) for i in range(len(records))], "row": [_label(r) for r in records],
               "MCC [95 % CI]": [("n/a" if pd.isna(r["mcc_mean"]) else _num(r["mcc_mean"]) + (
                   f" [{_num(r['mcc_low'])}, {_num(r['mcc_high'])}]" if pd.notna(r.get("mcc_low")) else "")) for r in records]}
    for metric, header in COMPACT_METRICS.items():
        columns[header] = ["n/a" if pd.isna(r.get(f"{metric}_mean")) else _num(r[f"{metric}_mean"]) for r in records]
    columns["FPS"] = ["n/a" if pd.isna(r.get("fps_mean", np.nan)) else f"{r['fps_mean']:.0f}" for r in records]
    columns["n"] = [str(r["n"]) for r in records]
    if "missing" in table and (table["missing"] > 0).any():
        columns["missing"] = [str(r["missing"]) for r in records]
    if "degenerate" in table and table["degenerate"].any():
        columns["row"] = [label + (" †" if r.get("degenerate") else "") for label, r in zip(columns["row"], records)]
    align = ["right", "left", *["right"] * (len(columns) - 2)]
    labels = columns["row"]
    text = tabulate(columns, headers="keys", tablefmt="pipe", colalign=align, disable_numparse=True)
    overflow = max(len(line) for line in text.splitlines()) - width
    if overflow > 0:  # cut the labels by what the table is too wide (tabulate pads headers its own way: measure, not guess)
        room = max(max(len(label) for label in labels) - overflow, 12)
        columns["row"] = [_shorten(label, room) for label in labels]
        text = tabulate(columns, headers="keys", tablefmt="pipe", colalign=align, disable_numparse=True)
    return text


def to_markdown(table: pd.DataFrame, title: str = "", *, report_dir: Path | str | None = None, width: int = TERMINAL_WIDTH) -> str:
    """The leaderboard for a terminal: the compact table (`compact_table`), notes wrapped to `width`, and a last line
    saying where the full table is (leaderboard.csv and report.html, in `report_dir` when given)."""
    body = compact_table(table, width) if not table.empty else "(no finished cells)"
    notes = [f"MCC: mean [{CI_NOTE}]; F1 and AUC macro-averaged over classes; Accuracy: plain accuracy; on the held-out test "
             "folds. FPS: model forward only, conditions in each run's throughput.* tags; n: finished cells."]
    if "degenerate" in table and table["degenerate"].any():
        notes.append(f"†: {DEGENERATE} in every cell (MCC 0 ± 0); a row that beats it shows no more than that it learnt something.")
    notes.append(f"Every metric with std and CI: {Path(report_dir) / 'leaderboard.csv'} and {Path(report_dir) / 'report.html'}."
                 if report_dir is not None else "Every metric with std and CI: leaderboard.csv and report.html in the report folder.")
    wrapped = "\n".join(textwrap.fill(n, width, break_on_hyphens=False) for n in notes)
    return (f"# {title}\n\n" if title else "") + body + "\n\n" + wrapped + "\n"


def full_markdown(table: pd.DataFrame, title: str = "") -> str:
    """Every metric as mean ± std [95 % CI] (leaderboard.md): wide, for a file, not a terminal."""
    body = format_leaderboard(table).to_markdown(index=False) if not table.empty else "(no finished cells)"
    notes = ("\n\nOn the held-out test fold. MCC (R_K): the multiclass Matthews statistic; macro: one-vs-rest per class, "
             "averaged; micro (Medico): one-vs-rest counts pooled over classes, as the Medico 2018 organisers scored; "
             "accuracy: correct / N; positive: the suite's positive class alone. "
             f"mean ± sample std [{CI_NOTE}] over folds x seeds (n cells). FPS: model forward only, conditions in "
             "each run's throughput.* tags.")
    return (f"# {title}\n\n" if title else "") + body + notes + "\n"


def write_report(table: pd.DataFrame, cells: pd.DataFrame, out_dir: Path, title: str) -> list[Path]:
    """The quick tables: leaderboard.csv, leaderboard.md, cells.csv."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / "leaderboard.csv", out_dir / "leaderboard.md", out_dir / "cells.csv"]
    table.to_csv(paths[0], index=False)
    paths[1].write_text(full_markdown(table, title))
    cells.to_csv(paths[2], index=False)
    return paths

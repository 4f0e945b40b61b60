"""The leaderboard: one row per (source, backbone, strategy[, fraction]) with mean, std and 95 % CI per metric.

Built from the FINISHED cell runs; the runner prints it after the last cell and `benchmark.report.document`
puts it at the top of the full report.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.report import statistics as st
from benchmark.report.results import METRICS, ROW_KEYS
from tracking.naming import EXTERNAL

COLUMN_NAMES = {"mcc": "MCC", "f1": "F1", "rec": "REC", "prec": "PREC", "spec": "SPEC", "acc": "ACC", "auc": "AUC", "acc_micro": "ACC micro"}


def cell_results(runs: pd.DataFrame) -> pd.DataFrame:
    """Finished fine-tuning runs (a `runs_frame`) as one row per cell: keys, fold, seed, metrics."""
    if runs.empty:
        return pd.DataFrame()
    frame = pd.DataFrame({
        "source": runs["params.source"], "backbone": runs["params.backbone"], "strategy": runs["params.strategy"],
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
            s = st.mean_ci(group[metric]) if metric in group else st.mean_ci([])
            row.update({f"{metric}_mean": s.mean, f"{metric}_std": s.std, f"{metric}_low": s.low, f"{metric}_high": s.high})
        for column in (c for c in group if c.startswith(f"{EXTERNAL}/") and c.count("/") == 2 and c.endswith("/mcc")):  # external sets
            row[f"{column}_mean"] = group[column].mean()
        for extra in ("fps", "fit_seconds", "params", "flops_per_image"):
            row[f"{extra}_mean"] = group[extra].mean() if extra in group else np.nan
        if {"train_rows", "epochs_trained", "fit_seconds"} <= set(group):
            row["train_ips_mean"] = (group["train_rows"] * group["epochs_trained"] / group["fit_seconds"]).mean()
        rows.append(row)
    table = pd.DataFrame(rows).sort_values("mcc_mean", ascending=False, kind="stable").reset_index(drop=True)
    if table["fraction"].nunique() == 1:
        table = table.drop(columns="fraction")  # one fraction: the column says nothing
    return table


def _cell_text(mean, std, low, high) -> str:
    if pd.isna(mean):
        return "n/a"
    text = f"{mean:.3f}"
    if pd.notna(std):
        text += f" ± {std:.3f}"
    if pd.notna(low):
        text += f" [{low:.3f}, {high:.3f}]"
    return text


def format_leaderboard(table: pd.DataFrame) -> pd.DataFrame:
    """Human columns: `MCC` as '0.812 ± 0.034 [0.770, 0.854]' (mean ± std [95 % CI])."""
    if table.empty:
        return table
    keys = [c for c in (*ROW_KEYS,) if c in table]
    out = table[keys].copy()
    for metric in METRICS:
        if f"{metric}_mean" in table:
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


def to_markdown(table: pd.DataFrame, title: str = "") -> str:
    body = format_leaderboard(table).to_markdown(index=False) if not table.empty else "(no finished cells)"
    notes = ("\n\nMetrics are macro-averaged over classes on the held-out test fold (ACC micro: plain accuracy); "
             "mean ± sample std [95 % t-interval] over folds x seeds (n cells). FPS: model forward only, conditions in "
             "each run's throughput.* tags.")
    return (f"# {title}\n\n" if title else "") + body + notes + "\n"


def write_report(table: pd.DataFrame, cells: pd.DataFrame, out_dir: Path, title: str) -> list[Path]:
    """The quick tables: leaderboard.csv, leaderboard.md, cells.csv."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / "leaderboard.csv", out_dir / "leaderboard.md", out_dir / "cells.csv"]
    table.to_csv(paths[0], index=False)
    paths[1].write_text(to_markdown(table, title))
    cells.to_csv(paths[2], index=False)
    return paths

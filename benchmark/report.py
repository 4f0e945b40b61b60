"""The leaderboard: one row per (source, backbone, strategy), Medico-table metrics as mean ± std.

    medtl report benchmark/suites/smoke.yaml
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from tasks.training.metrics import LEADERBOARD_METRICS

ROW_KEYS = ("source", "backbone", "strategy")
COLUMN_NAMES = {"mcc": "MCC", "f1": "F1", "rec": "REC", "prec": "PREC", "spec": "SPEC", "acc": "ACC", "auc": "AUC"}


def cell_results(runs: pd.DataFrame) -> pd.DataFrame:
    """Finished fine-tuning runs as one row per cell: keys, fold, seed, metrics."""
    if runs.empty:
        return pd.DataFrame()
    frame = pd.DataFrame(
        {
            "source": runs["params.source"],
            "backbone": runs["params.backbone"],
            "strategy": runs["params.strategy"],
            "fraction": runs["params.fraction"].astype(float),
            "fold": runs["params.fold"].astype(int),
            "seed": runs["params.seed"].astype(int),
            "run_id": runs["run_id"],
        }
    )
    for metric in (*LEADERBOARD_METRICS, "fps"):
        column = f"metrics.test/{metric}"
        frame[metric] = runs[column].astype(float) if column in runs else np.nan
    return frame


def leaderboard(cells: pd.DataFrame) -> pd.DataFrame:
    """Aggregate cells over folds and seeds; sorted by mean MCC, best first."""
    if cells.empty:
        return pd.DataFrame()
    keys = list(ROW_KEYS) + (["fraction"] if cells["fraction"].nunique() > 1 else [])
    grouped = cells.groupby(keys, sort=False)
    table = grouped.size().rename("n").to_frame()
    for metric in LEADERBOARD_METRICS:
        table[f"{metric}_mean"] = grouped[metric].mean()
        # ddof=1: the spread of folds x seeds as a sample; a single cell has no spread (NaN).
        table[f"{metric}_std"] = grouped[metric].std(ddof=1)
    table["fps_mean"] = grouped["fps"].mean()
    return table.sort_values("mcc_mean", ascending=False).reset_index()


def format_leaderboard(table: pd.DataFrame) -> pd.DataFrame:
    """Human columns: `MCC` as '0.812 ± 0.034', FPS rounded."""
    if table.empty:
        return table
    keys = [c for c in (*ROW_KEYS, "fraction") if c in table]
    out = table[keys].copy()
    for metric in LEADERBOARD_METRICS:
        mean, std = table[f"{metric}_mean"], table[f"{metric}_std"].fillna(0.0)
        out[COLUMN_NAMES[metric]] = [f"{m:.3f} ± {s:.3f}" if pd.notna(m) else "n/a" for m, s in zip(mean, std)]
    out["FPS"] = table["fps_mean"].round(0).astype("Int64")
    out["n"] = table["n"]
    return out


def to_markdown(table: pd.DataFrame, title: str = "") -> str:
    body = format_leaderboard(table).to_markdown(index=False) if not table.empty else "(no finished cells)"
    notes = (
        "\n\nMetrics are macro-averaged over classes on the held-out test fold; mean ± sample std over "
        "folds x seeds (n cells). FPS: model forward only, conditions in each run's throughput.* tags."
    )
    return (f"# {title}\n\n" if title else "") + body + notes + "\n"


def write_report(table: pd.DataFrame, cells: pd.DataFrame, out_dir: Path, title: str) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / "leaderboard.csv", out_dir / "leaderboard.md", out_dir / "cells.csv"]
    table.to_csv(paths[0], index=False)
    paths[1].write_text(to_markdown(table, title))
    cells.to_csv(paths[2], index=False)
    return paths

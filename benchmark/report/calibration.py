"""Calibration in the report: are a row's probabilities to be believed, before and after temperature scaling?

    medtl report SUITE      # section "Calibration": a table and a reliability diagram per row

Every tested cell logs (benchmark/cell/evaluation.py, tasks/training/calibration.py) test/ece (top-label,
equal-mass bins), test/brier, test/nll of its test rows, their `_ts` versions after dividing the logits by
the temperature T fitted on its validation rows, and calibration/temperature.

  table     per leaderboard row: each of those six numbers as mean ± sample std over the row's cells,
            and the mean T (1.0: scaling did not lower the validation NLL)
  diagram   per row: accuracy against confidence over the row's cells' pooled test predictions
            (test/predictions.csv of every fold x seed), in CALIBRATION_BINS equal-mass bins recomputed
            on the pooled rows (tasks.training.calibration.reliability_table; pooling the cells' own
            reliability.csv bins would mix bins of different edges), before and after each cell's own
            temperature (softmax(log p / T) is exactly the scaled softmax, since log p differs from the
            logits by a constant per row). The diagonal is perfect calibration.
Multi-label rows have per-label scores but no top-label diagram (their predictions carry no `target`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from scipy.special import softmax

from benchmark.report.floors import row_cells
from benchmark.report.render import Section, file_slug
from benchmark.report.results import SuiteResults
from tasks.training.calibration import EPS, reliability_table

CALIBRATION_BINS = 15  # as the cells' own ECE (benchmark/cell/evaluation.py)
SCORES = ("ece", "brier", "nll")  # cells.csv columns (results.RUN_METRICS), each also with `_ts`
NAMES = {"ece": "ECE", "brier": "Brier", "nll": "NLL"}


def calibration_table(cells: pd.DataFrame, board: pd.DataFrame) -> pd.DataFrame:
    """One line per leaderboard row: n (cells with calibration metrics), <score>[_ts]_mean / _std, temperature_mean."""
    records = []
    for row in board.to_dict("records"):
        own = row_cells(cells, row)
        own = own[own["ece"].notna()] if "ece" in own else own.iloc[:0]
        record = {"row": row["row"], "n": len(own)}
        for score in SCORES:
            for column in (score, f"{score}_ts"):
                values = own[column] if column in own else pd.Series(dtype=float)
                record[f"{column}_mean"] = float(values.mean()) if len(values) else np.nan
                record[f"{column}_std"] = float(values.std(ddof=1)) if len(values) > 1 else np.nan
        record["temperature_mean"] = float(own["temperature"].mean()) if len(own) else np.nan
        records.append(record)
    return pd.DataFrame(records)


def _shown(table: pd.DataFrame) -> pd.DataFrame:
    """'mean ± std' text per score, before and after scaling side by side."""
    out = table[["row", "n"]].copy()

    def text(mean, std):
        return "—" if pd.isna(mean) else f"{mean:.4f}" + ("" if pd.isna(std) else f" ± {std:.4f}")

    for score in SCORES:
        for column, label in ((score, NAMES[score]), (f"{score}_ts", f"{NAMES[score]} after T")):
            out[label] = [text(m, s) for m, s in zip(table[f"{column}_mean"], table[f"{column}_std"])]
    out["mean T"] = table["temperature_mean"]
    return out


def pooled_reliability(results: SuiteResults, cells: pd.DataFrame, bins: int = CALIBRATION_BINS
                       ) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """(before, after temperature scaling) reliability tables of the cells' pooled test predictions; None without
    single-label predictions."""
    before, after, targets = [], [], []
    for run_id, temperature in zip(cells["run_id"], cells.get("temperature", pd.Series(np.nan, index=cells.index))):
        frame = results.predictions(run_id)
        if frame is None or "target" not in frame:
            continue
        probs = frame[[c for c in frame.columns if c.startswith("p:")]].to_numpy(float)
        t = 1.0 if pd.isna(temperature) else float(temperature)
        before.append(probs)
        after.append(softmax(np.log(np.clip(probs, EPS, 1.0)) / t, axis=1))
        targets.append(frame["target"].to_numpy(int))
    if not before:
        return None
    y = np.concatenate(targets)
    return reliability_table(np.concatenate(before), y, bins), reliability_table(np.concatenate(after), y, bins)


def calibration_section(results: SuiteResults, board: pd.DataFrame, out_dir: Path) -> Section:
    """The report's calibration section; writes calibration.csv and reliability_<row>.png into `out_dir`."""
    from benchmark.report import plots

    section = Section("Calibration")
    cells = results.cells
    if board.empty or "ece" not in cells or cells["ece"].isna().all():
        section.paragraphs.append("No cell logged calibration metrics (test/ece, test/brier, test/nll): cells tested by "
                                  "medtl before calibration was added have none; rerun them to get this section.")
        return section
    table = calibration_table(cells, board)
    table.to_csv(Path(out_dir) / "calibration.csv", index=False)
    section.paragraphs.append(
        "Test-row calibration, mean ± sample std over each row's cells. ECE: top-label expected calibration error over "
        f"{CALIBRATION_BINS} equal-mass bins (Nixon et al. 2019); Brier: multi-class Brier score (sum over classes, in "
        "[0, 2]); NLL: mean negative log-likelihood of the target. 'after T': the same after temperature scaling "
        "(Guo et al. 2017), T fitted per cell on its validation rows by minimising NLL, never raising it (T = 1 where "
        "it would). Lower is better for all three. svm margins and k-NN vote shares are scores, not probabilities: "
        "their raw calibration is expected to be poor.")
    section.tables.append(("Calibration per row", _shown(table)))
    for row in board.to_dict("records"):
        pooled = pooled_reliability(results, row_cells(cells, row))
        if pooled is None:
            continue
        slug = file_slug(row["row"])
        section.images.append((f"{row['row']}: reliability diagram, test predictions of {row['n']} cells pooled "
                               f"({CALIBRATION_BINS} equal-mass bins), before and after each cell's temperature",
                               plots.reliability_diagram(*pooled, out_dir / f"reliability_{slug}.png", row["row"])))
    return section

"""What a row has to beat before its number means anything: chance rows, and rows that learnt nothing.

    medtl report benchmark/suites/smoke.yaml     # the leaderboard shows both

- Chance floors: scikit-learn's DummyClassifier scored on the cells' own test rows with the cells'
  own metric code. `most_frequent` is deterministic (one score per fold); `stratified` draws its
  predictions at random, so it is drawn CHANCE_DRAWS times per fold: its spread is the spread of
  chance, not the 0.000 one draw per fold would show.
- Degenerate rows: every cell predicted one class for every test image (MCC exactly 0, std 0). Such
  a row is a training failure (collapsed to the majority class), and "pretrained beats it" is no
  finding; the report says so beside the row and in the verdicts.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from benchmark.report import statistics as st
from benchmark.report.results import METRIC_RANGE, METRICS, ROW_KEYS, SuiteResults

# Draws of the stratified DummyClassifier per (fold, seed): 20 gives its mean to about +-0.01 MCC on 100 test rows.
CHANCE_DRAWS = 20


def row_cells(cells: pd.DataFrame, row) -> pd.DataFrame:
    """The cells of one leaderboard row (a dict-like with ROW_KEYS)."""
    mask = np.ones(len(cells), dtype=bool)
    for key in ROW_KEYS:
        if key in row:
            mask &= (cells[key] == row[key]).to_numpy()
    return cells[mask]


def chance_floors(results: SuiteResults, draws: int = CHANCE_DRAWS) -> pd.DataFrame:
    """DummyClassifier rows scored per (fold, seed) on the cells' test rows, fitted on the other folds' test rows
    (= that fold's training and validation rows under k-fold; under an official split, on the test rows themselves).
    `stratified` is drawn `draws` times per (fold, seed) with random_state seed * draws + d; n counts the draws."""
    cells = results.cells
    targets = {}
    for (fold, seed), group in cells.groupby(["fold", "seed"]):
        frame = results.predictions(group["run_id"].iloc[0])
        if frame is not None and "target" in frame:
            targets[(fold, seed)] = (frame["target"].to_numpy(int), sum(c.startswith("p:") for c in frame.columns))
    scores: dict[str, list[dict]] = {"most_frequent": [], "stratified": []}
    for (fold, seed), (test, classes) in targets.items():
        others = [t for (f, s), (t, _) in targets.items() if s == seed and f != fold]
        train = np.concatenate(others) if others else test
        scores["most_frequent"].append(st.chance_scores(train, test, classes, seed=seed, strategies=("most_frequent",))["most_frequent"])
        for draw in range(draws):
            scores["stratified"].append(st.chance_scores(train, test, classes, seed=seed * draws + draw,
                                                         strategies=("stratified",))["stratified"])
    rows = []
    for strategy, values in scores.items():
        if not values:
            continue
        frame = pd.DataFrame(values)
        row = {"row": f"chance: {strategy}", "source": f"chance: {strategy}", "backbone": "-", "strategy": "DummyClassifier", "n": len(frame)}
        for metric in METRICS:
            s = st.mean_ci(frame[metric] if metric in frame else [], bounds=METRIC_RANGE[metric])
            row.update({f"{metric}_mean": s.mean, f"{metric}_std": s.std, f"{metric}_low": s.low, f"{metric}_high": s.high})
        rows.append(row)
    return pd.DataFrame(rows)


def degenerate_rows(results: SuiteResults, board: pd.DataFrame) -> list[bool]:
    """Per leaderboard row: True when every cell predicted a single class for all its test images.

    Read from the cells' predictions; a cell without a predictions artifact counts as degenerate only if its MCC is
    exactly 0 (what a constant prediction gives), and a row needs MCC std 0 as well."""
    out = []
    for _, row in board.iterrows():
        cells = row_cells(results.cells, row)
        if not len(cells) or not (cells["mcc"].fillna(np.nan) == 0).all():
            out.append(False)
            continue
        constant = []
        for run_id in cells["run_id"]:
            frame = results.predictions(run_id)
            constant.append(frame["predicted"].nunique() <= 1 if frame is not None and "predicted" in frame else True)
        out.append(all(constant))
    return out

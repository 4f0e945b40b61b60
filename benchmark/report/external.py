"""External validation in the report: does the ranking, and the winner, hold on another site's images?

    medtl report SUITE      # a suite whose target lists `external:` test sets gets this section

Per external set (benchmark/cell/external.py logs external/<name>/* and external/<name>/predictions.csv):
  side by side  every row's in-domain MCC (mean over its folds x seeds, on its held-out test rows) and its
                external MCC (mean over the same cells, each scoring the whole external set), with both ranks;
                `ensemble-folds` rows have external scores only (their members never shared a test fold)
  agreement     Spearman's rho and Kendall's tau (scipy) between the in-domain and the external ordering of
                the rows that have both, and whether the in-domain winner is also the external winner
  paired tests  the external leader against each next row (up to TOP_COMPARED), McNemar's test on per-image
                correctness (DeLong on AUC for binary tasks) over the external images, Holm-adjusted. A row's
                prediction of an image is its cells' probabilities averaged (pooled over folds x seeds), so
                each external image is one pair, as McNemar assumes.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from benchmark.report import statistics as st
from benchmark.report.comparisons import row_label
from benchmark.report.render import Section
from benchmark.report.results import ROW_KEYS, SuiteResults
from tracking.naming import EXTERNAL, external_predictions, external_prefix

TOP_COMPARED = 4  # rows below the external leader it is tested against


def external_names(cells: pd.DataFrame) -> list[str]:
    """The external test sets the finished cells were scored on (their external/<name>/mcc columns)."""
    return sorted({c.split("/")[1] for c in cells.columns if c.startswith(f"{EXTERNAL}/") and c.count("/") == 2 and c.endswith("/mcc")})


def _row_cells(cells: pd.DataFrame, row) -> pd.DataFrame:
    mask = np.ones(len(cells), dtype=bool)
    for key in ROW_KEYS:
        if key in row:
            mask &= (cells[key] == row[key]).to_numpy()
    return cells[mask]


def side_by_side(cells: pd.DataFrame, board: pd.DataFrame, name: str) -> pd.DataFrame:
    """One line per leaderboard row: in-domain and external MCC (mean and 95 % CI over cells) and both ranks."""
    column = f"{external_prefix(name)}mcc"
    records = []
    for row in board.to_dict("records"):
        own = _row_cells(cells, row)
        inside = st.mean_ci(own["mcc"]) if "mcc" in own else st.mean_ci([])
        outside = st.mean_ci(own[column]) if column in own else st.mean_ci([])
        records.append({"row": row.get("row", row_label(row)), "n": len(own), "in_domain_mcc": inside.mean,
                        "in_domain_low": inside.low, "in_domain_high": inside.high, "external_mcc": outside.mean,
                        "external_low": outside.low, "external_high": outside.high})
    table = pd.DataFrame(records)
    if table.empty:
        return table
    table["in_domain_rank"] = table["in_domain_mcc"].rank(ascending=False, method="min")
    table["external_rank"] = table["external_mcc"].rank(ascending=False, method="min")
    table["change"] = table["external_mcc"] - table["in_domain_mcc"]
    return table.sort_values("external_mcc", ascending=False, kind="stable").reset_index(drop=True)


def rank_agreement(table: pd.DataFrame) -> dict:
    """Spearman and Kendall between in-domain and external MCC over the rows that have both (scipy)."""
    both = table.dropna(subset=["in_domain_mcc", "external_mcc"])
    out = {"rows": len(both), "spearman": np.nan, "spearman_p": np.nan, "kendall": np.nan, "kendall_p": np.nan}
    constant = both["in_domain_mcc"].nunique() < 2 or both["external_mcc"].nunique() < 2  # no ordering to correlate
    if len(both) >= 2 and not constant:
        rho = stats.spearmanr(both["in_domain_mcc"], both["external_mcc"])
        tau = stats.kendalltau(both["in_domain_mcc"], both["external_mcc"])
        out.update(spearman=float(rho.statistic), spearman_p=float(rho.pvalue), kendall=float(tau.statistic),
                   kendall_p=float(tau.pvalue))
    return out


def row_predictions(results: SuiteResults, cells: pd.DataFrame, name: str) -> pd.DataFrame | None:
    """A row's prediction of each external image: its cells' probabilities averaged per item; None for multi-label
    rows or without predictions."""
    frames = [results.artifact_table(run_id, external_predictions(name)) for run_id in cells["run_id"]]
    frames = [f for f in frames if f is not None and "target" in f]
    if not frames:
        return None
    columns = [c for c in frames[0].columns if c.startswith("p:")]
    pooled = pd.concat(frames, ignore_index=True).groupby("item", sort=False)
    out = pooled[columns].mean()
    out["target"] = pooled["target"].first()
    out["predicted"] = out[columns].to_numpy(float).argmax(axis=1)
    return out.reset_index()


def external_comparisons(results: SuiteResults, table: pd.DataFrame, board: pd.DataFrame, name: str,
                         top: int = TOP_COMPARED) -> pd.DataFrame:
    """The external leader against each of the next `top` rows: McNemar (and DeLong, binary) on pooled predictions."""
    ranked = table.dropna(subset=["external_mcc"])
    if len(ranked) < 2:
        return pd.DataFrame()
    rows = {r.get("row", row_label(r)): r for r in board.to_dict("records")}
    leader = ranked["row"].iloc[0]
    a = row_predictions(results, _row_cells(results.cells, rows[leader]), name)
    records = []
    for other in ranked["row"].iloc[1:top + 1]:
        b = row_predictions(results, _row_cells(results.cells, rows[other]), name)
        if a is None or b is None:
            continue
        shared = a.merge(b, on="item", suffixes=("_a", "_b"))
        tests = [st.mcnemar_test(shared["target_a"] == shared["predicted_a"], shared["target_b"] == shared["predicted_b"])]
        classes = [c[2:-2] for c in shared.columns if c.startswith("p:") and c.endswith("_a")]
        if len(classes) == 2 and shared["target_a"].nunique() == 2:
            tests.append(st.delong_test(shared[f"p:{classes[1]}_a"], shared[f"p:{classes[1]}_b"], shared["target_a"]))
        records += [{"external": name, "a": leader, "b": other, **t.as_dict()} for t in tests]
    compared = pd.DataFrame(records)
    if compared.empty:
        return compared
    compared["test_family"] = compared["test"].str.replace(" (exact)", "", regex=False)
    compared["p_holm"] = np.nan
    for _, index in compared.groupby("test_family").groups.items():
        compared.loc[index, "p_holm"] = st.holm(compared.loc[index, "p_value"])
    compared["significant"] = compared["p_holm"] < st.ALPHA
    return compared


def winner_text(table: pd.DataFrame, compared: pd.DataFrame, name: str) -> str:
    """Does the in-domain winner hold on external set `name`?"""
    inside = table.dropna(subset=["in_domain_mcc"])
    outside = table.dropna(subset=["external_mcc"])
    if inside.empty or outside.empty:
        return f"{name}: no row has both an in-domain and an external score."
    best_in = inside.sort_values("in_domain_mcc", ascending=False, kind="stable")["row"].iloc[0]
    best_out = outside["row"].iloc[0]
    rank = int(table.loc[table["row"] == best_in, "external_rank"].iloc[0]) if table.loc[table["row"] == best_in, "external_rank"].notna().any() else None
    mcnemar = compared[compared["test_family"] == "McNemar"] if len(compared) else compared
    beaten = mcnemar[mcnemar["significant"]]["b"].tolist() if len(mcnemar) else []
    if best_in == best_out:
        verdict = f"the winner holds: {best_in} is best in-domain and on {name}"
    else:
        verdict = (f"the winner does not hold: {best_in} is best in-domain but ranks {rank if rank else '?'} on {name}, "
                   f"where {best_out} leads")
    significance = (f"; on {name} the leader is significantly better (McNemar, Holm) than {', '.join(beaten)}" if beaten else
                    f"; on {name} the leader is not significantly better than the rows tested against it (McNemar, Holm)"
                    if len(mcnemar) else "")
    return f"{verdict}{significance}."


def external_section(results: SuiteResults, board: pd.DataFrame) -> Section:
    """The report's external validation section (empty text when the suite has no external test set)."""
    section = Section("External validation")
    names = external_names(results.cells)
    if not names or board.empty:
        section.paragraphs.append("No external test set: list `target.external` in the suite to test whether the ranking "
                                  "and the winner hold on another site's images.")
        return section
    section.paragraphs.append(
        "In-domain: mean MCC over each row's folds x seeds on its held-out test rows. External: mean MCC of the same "
        "cells, each scoring every image of the external set (ensemble-folds rows: the averaged fold models, external "
        "only). Rank agreement over rows with both scores: Spearman's rho and Kendall's tau (scipy). Paired tests: the "
        f"external leader against the next {TOP_COMPARED} rows, McNemar on per-image correctness (DeLong on AUC for "
        "binary tasks), each row's prediction being its cells' probabilities averaged per image; Holm-adjusted, "
        f"alpha = {st.ALPHA}.")
    for name in names:
        table = side_by_side(results.cells, board, name)
        agreement = rank_agreement(table)
        compared = external_comparisons(results, table, board, name)
        if agreement["rows"] >= 2 and np.isnan(agreement["spearman"]):
            section.paragraphs.append(f"{name}: rank correlation (Spearman rho, Kendall tau) undefined over "
                                      f"{agreement['rows']} rows: every row has the same in-domain or the same external MCC.")
        elif agreement["rows"] >= 2:
            section.paragraphs.append(
                f"{name}: rank correlation between in-domain and external MCC over {agreement['rows']} rows: Spearman rho = "
                f"{agreement['spearman']:.3f} (p = {agreement['spearman_p']:.3g}), Kendall tau = {agreement['kendall']:.3f} "
                f"(p = {agreement['kendall_p']:.3g}).")
        else:
            section.paragraphs.append(f"{name}: rank correlation needs at least 2 rows with both scores; "
                                      f"{agreement['rows']} here.")
        section.paragraphs.append(f"Does the winner hold? {winner_text(table, compared, name)}")
        section.tables.append((f"In-domain and external ({name}) MCC per row", table))
        if len(compared):
            section.tables.append((f"Paired tests on {name}", compared[["a", "b", "test", "n", "difference", "low", "high",
                                                                        "effect_name", "effect", "p_value", "p_holm",
                                                                        "significant"]]))
    return section

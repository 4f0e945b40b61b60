"""Power of the report's verdicts: the smallest difference each comparison could detect, and what it would take.

    medtl report benchmark/suites/smoke.yaml      # section "Power: what this suite could detect"

"No significant difference" from 3 folds x 1 seed says little; this module puts numbers on it. For
each comparison, from its own observed spread (80 % power, two-sided, at the Holm level of its first
step, alpha / m for m comparisons in its family and test, since that is what a lone real difference
must pass):

- corrected resampled t-test (Nadeau & Bengio 2003), n cells, test/training row ratio r, observed
  variance s^2 of the paired differences:
      MDE = (t_{1-a/2, n-1} + t_{power, n-1}) * sqrt((1/n + r) * s^2)
  the usual approximation to the noncentral-t power (the second quantile is the power's); checked by
  simulation in tests/benchmark/test_power.py. Cells needed for the observed difference d: the smallest
  n = k * seeds (k folds kept) with MDE(n) <= |d|. The r * s^2 term does not shrink with n (the folds'
  training rows overlap however many draws are made), so a difference below
  (z_{1-a/2} + z_power) * sqrt(r * s^2) is out of reach of repeats alone: the table says so.
- McNemar on n test images with discordant share psi (normal approximation, Connor 1987):
      d * sqrt(n) = z_{1-a/2} sqrt(psi) + z_power sqrt(psi - d^2)
  solved for d (the MDE) at the observed psi, or for n (images needed). Seeds add no images to it:
  the official test split is what it is.
- DeLong: z test with the observed standard error se of the AUC difference: MDE = (z_{1-a/2} + z_power) se;
  se shrinks as 1/sqrt(images), which gives the images needed.
- Wilcoxon: no closed form; read the corrected t-test's row of the same pair.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import optimize, stats

from benchmark.report import statistics as st
from benchmark.report.comparisons import row_label
from benchmark.report.render import Section
from benchmark.report.results import ROW_KEYS

POWER = 0.80
MAX_SEEDS_SEARCHED = 10_000  # beyond this the answer is "out of reach" in practice


def corrected_t_mde(variance: float, n: int, ratio: float, alpha: float = st.ALPHA, power: float = POWER) -> float:
    """Smallest mean difference the corrected t-test over `n` cells detects with probability `power` (see module docstring)."""
    if n < 2 or not variance >= 0:
        return float("nan")
    df = n - 1
    return float((stats.t.ppf(1 - alpha / 2, df) + stats.t.ppf(power, df)) * np.sqrt((1.0 / n + ratio) * variance))


def corrected_t_limit(variance: float, ratio: float, alpha: float = st.ALPHA, power: float = POWER) -> float:
    """The MDE as n grows without bound: (z_{1-a/2} + z_power) * sqrt(ratio * variance)."""
    return float((stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)) * np.sqrt(ratio * variance))


def seeds_needed(difference: float, variance: float, ratio: float, folds: int, alpha: float = st.ALPHA,
                 power: float = POWER) -> float:
    """Seeds (repeated k-fold draws of `folds` cells each) for the corrected t-test to detect `difference`; inf when out of reach."""
    d = abs(difference)
    if not np.isfinite(d) or not variance >= 0 or folds < 1:
        return float("nan")
    if variance == 0:
        return 1.0 if d > 0 else float("inf")
    if d <= corrected_t_limit(variance, ratio, alpha, power):
        return float("inf")
    seeds = np.arange(1, MAX_SEEDS_SEARCHED + 1)
    n = seeds * folds
    ok = n >= 2
    df = np.maximum(n - 1, 1)
    mde = (stats.t.ppf(1 - alpha / 2, df) + stats.t.ppf(power, df)) * np.sqrt((1.0 / n + ratio) * variance)
    hit = np.flatnonzero(ok & (mde <= d))
    return float(seeds[hit[0]]) if len(hit) else float("inf")


def _mcnemar_gap(d: float, n: int, psi: float, alpha: float, power: float) -> float:
    return d * np.sqrt(n) - stats.norm.ppf(1 - alpha / 2) * np.sqrt(psi) - stats.norm.ppf(power) * np.sqrt(max(psi - d * d, 0.0))


def mcnemar_mde(n: int, discordant: float, alpha: float = st.ALPHA, power: float = POWER) -> float:
    """Smallest accuracy difference McNemar's test on `n` images with discordant share `discordant` detects."""
    if n < 1 or not 0 < discordant <= 1:
        return float("nan")
    if _mcnemar_gap(np.sqrt(discordant), n, discordant, alpha, power) < 0:
        return float("nan")  # even a one-sided discordance would not be detected at this size
    return float(optimize.brentq(_mcnemar_gap, 0.0, np.sqrt(discordant), args=(n, discordant, alpha, power)))


def mcnemar_images_needed(difference: float, discordant: float, alpha: float = st.ALPHA, power: float = POWER) -> float:
    """Test images McNemar's test needs to detect `difference` at discordant share `discordant` (Connor 1987)."""
    d = abs(difference)
    if d == 0 or not discordant > 0 or d * d > discordant:
        return float("inf") if d == 0 else float("nan")
    za, zb = stats.norm.ppf(1 - alpha / 2), stats.norm.ppf(power)
    return float(np.ceil((za * np.sqrt(discordant) + zb * np.sqrt(discordant - d * d)) ** 2 / d ** 2))


def z_mde(se: float, alpha: float = st.ALPHA, power: float = POWER) -> float:
    return float((stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)) * se)


def _row_ratio(cells: pd.DataFrame) -> tuple[float, int]:
    """Test/training row ratio and folds of a row's cells, as comparisons.compare_rows takes them."""
    k = int(cells["folds"].iloc[0]) if len(cells) else 0
    ratio = float((cells["test_rows"] / cells["train_rows"]).mean()) if len(cells) else float("nan")
    if not np.isfinite(ratio) or ratio <= 0:
        ratio = 1.0 / max(k - 1, 1)
    return ratio, k


def power_table(cells: pd.DataFrame, board: pd.DataFrame, compared: pd.DataFrame, power: float = POWER) -> pd.DataFrame:
    """One row per comparison with a power formula: its difference and CI, the MDE at the Holm first-step level,
    and the folds x seeds (k-fold) or test images (McNemar, DeLong) it would need to detect the observed difference."""
    if compared is None or not len(compared):
        return pd.DataFrame()
    by_label = {row_label(r): r for r in board.to_dict("records")} if len(board) else {}
    sizes = compared.groupby(["family", "test_family"])["test"].transform("size")
    records = []
    for (_, c), m in zip(compared.iterrows(), sizes):
        level = st.ALPHA / m
        record = {"family": c["family"], "a": c["a"], "b": c["b"], "test": c["test"], "n": int(c["n"]), "difference": c["difference"],
                  "low": c["low"], "high": c["high"], "p_holm": c["p_holm"], "alpha_level": level, "mde": np.nan, "needed": ""}
        n, d = int(c["n"]), float(c["difference"])
        if c["test_family"] == "corrected t-test":
            row = by_label.get(c["a"])
            mine = cells[np.logical_and.reduce([(cells[k] == row[k]).to_numpy() for k in ROW_KEYS])] if row is not None else cells.iloc[:0]
            ratio, k = _row_ratio(mine)
            se = (c["high"] - c["low"]) / (2 * stats.t.ppf(1 - st.ALPHA / 2, n - 1))  # the CI is at the nominal 95 %
            variance = se ** 2 / (1.0 / n + ratio)
            record["mde"] = corrected_t_mde(variance, n, ratio, level, power)
            seeds = seeds_needed(d, variance, ratio, max(k, 1), level, power)
            record["needed"] = ("no difference observed" if d == 0 else f"{k} folds x {int(seeds)} seeds" if np.isfinite(seeds) else
                                f"out of reach by seeds (limit {corrected_t_limit(variance, ratio, level, power):.3f}: add test rows)")
        elif c["test_family"] == "McNemar":
            se = (c["high"] - c["low"]) / (2 * stats.norm.ppf(1 - st.ALPHA / 2))
            discordant = n * se ** 2 + d * d  # from the Wald CI: se^2 = (psi - d^2) / n
            record["mde"] = mcnemar_mde(n, discordant, level, power)
            images = mcnemar_images_needed(d, discordant, level, power)
            record["needed"] = f"{int(images)} test images" if np.isfinite(images) else "no difference observed"
        elif c["test_family"] == "DeLong":
            se = (c["high"] - c["low"]) / (2 * stats.norm.ppf(1 - st.ALPHA / 2))
            record["mde"] = z_mde(se, level, power)
            images = np.ceil(n * (record["mde"] / abs(d)) ** 2) if d else np.inf
            record["needed"] = f"{int(images)} test images" if np.isfinite(images) else "no difference observed"
        else:
            continue
        records.append(record)
    return pd.DataFrame(records)


def power_section(cells: pd.DataFrame, board: pd.DataFrame, compared: pd.DataFrame) -> tuple[Section, pd.DataFrame]:
    """The report's power section and its table (also written as power.csv)."""
    table = power_table(cells, board, compared)
    section = Section("Power: what this suite could detect", [
        f"For each comparison: the observed difference (a - b) with its 95 % CI; the minimum detectable difference (MDE) at "
        f"{POWER:.0%} power with the comparison's own observed spread, two-sided at its family's Holm first-step level alpha/m "
        "(`alpha_level`); and what it would take to detect the observed difference. Corrected t-test: MDE = (t_{1-a/2,n-1} + "
        "t_{power,n-1}) * sqrt((1/n + n_test/n_train) * s^2), folds kept, seeds added; McNemar: Connor's normal approximation at "
        "the observed discordant share; DeLong: (z_{1-a/2} + z_power) * SE. A 'no significant difference' whose MDE is larger "
        "than the differences that matter to you is no evidence that the rows are equal (benchmark/report/power.py)."])
    if len(table):
        section.tables.append(("", table))
    else:
        section.paragraphs.append("No comparisons: the suite has fewer than two rows in any family.")
    return section, table

"""Power of the comparisons and the group-sequential design of `repeats`: formulas against simulation and published values.

    python -m pytest tests/benchmark/test_power.py -q
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from benchmark.report import power as pw
from benchmark.report import sequential as sq

TOLERANCE = 3 * np.sqrt(0.05 * 0.95 / 2000)  # three binomial standard errors of a 5 % rate over 2000 simulations


def _tables(mu: float, cells: int, ratio: float, sims: int, seed: int) -> np.ndarray:
    """Paired differences of `sims` k-fold x seeds tables under the corrected t-test's model (Nadeau & Bengio):
    every pair of cells correlated with rho = r / (1 + r); mu in units of the independent part's sd."""
    rng = np.random.default_rng(seed)
    rho = ratio / (1 + ratio)
    return (mu * np.sqrt(1 - rho) + np.sqrt(rho) * rng.standard_normal((sims, 1))
            + np.sqrt(1 - rho) * rng.standard_normal((sims, cells)))


def _corrected_t(d: np.ndarray, ratio: float) -> np.ndarray:
    n = d.shape[1]
    return d.mean(1) / np.sqrt((1 / n + ratio) * d.var(ddof=1, axis=1))


def _run_sequential(tables: np.ndarray, planned: list[int], ratio: float) -> np.ndarray:
    """Look at which each table is decided (0: never), with the suites' boundaries."""
    bounds = sq.ttest_boundaries(planned, ratio)
    stop = np.zeros(len(tables), dtype=int)
    for k, n in enumerate(planned):
        hit = (np.abs(_corrected_t(tables[:, :n], ratio)) >= bounds[k]) & (stop == 0)
        stop[hit] = k + 1
    return stop


def test_normal_boundaries_match_published_lan_demets_obrien_fleming():
    # gsDesign (sfLDOF, two-sided symmetric, alpha 0.05), equally spaced looks: Jennison & Turnbull's tables agree.
    np.testing.assert_allclose(sq.normal_boundaries([1 / 3, 2 / 3, 1]), [3.710, 2.511, 1.993], atol=2e-3)
    assert sq.obrien_fleming_spent(1.0) == pytest.approx(0.05)


@pytest.mark.parametrize("planned,ratio", [([3, 6, 9, 12, 15], 0.5), ([5, 10, 15], 0.25), ([2, 4, 6], 1.0)])
def test_null_tables_through_the_sequential_procedure_reject_five_percent(planned, ratio):
    stop = _run_sequential(_tables(0.0, planned[-1], ratio, 2000, seed=11), planned, ratio)
    assert abs((stop > 0).mean() - 0.05) < TOLERANCE
    # Without the boundary, testing at every look at 0.05 would reject far more often: the design is what holds 5 %.
    naive = np.zeros(2000, dtype=bool)
    d = _tables(0.0, planned[-1], ratio, 2000, seed=11)
    for n in planned:
        naive |= 2 * stats.t.sf(np.abs(_corrected_t(d[:, :n], ratio)), n - 1) < 0.05
    assert naive.mean() > 0.05 + TOLERANCE


def test_a_planted_difference_is_detected_with_fewer_rounds_than_the_maximum():
    planned, ratio = [3, 6, 9, 12, 15], 0.5
    stop = _run_sequential(_tables(3.0, planned[-1], ratio, 2000, seed=12), planned, ratio)
    assert (stop > 0).mean() > 0.8
    assert stop[stop > 0].mean() < len(planned) - 1  # on average decided well before the last look


def test_replay_stops_at_the_first_decided_look_and_names_the_pair():
    rng = np.random.default_rng(3)
    rounds = [(0,), (0, 1), (0, 1, 2), (0, 1, 2, 3)]
    rows = []
    for seed in range(3):  # three of four rounds ran
        for fold in range(5):
            noise = rng.normal(0, 0.01)
            for source, mcc in (("good", 0.8), ("bad", 0.4)):
                rows.append({"source": source, "backbone": "smallcnn", "strategy": "full", "fraction": 1.0, "fold": fold,
                             "seed": seed, "mcc": mcc + noise + rng.normal(0, 0.02), "folds": 5, "test_rows": 20, "train_rows": 68})
    cells = pd.DataFrame(rows)
    done = sq.replay(cells, rounds)
    assert done.pair[0][0] == "good" and done.pair[1][0] == "bad"
    assert done.decided and len(done.looks) == 1 and done.stopped  # a 0.4 gap over 5 folds crosses at once
    assert done.looks[0].cells == 5 and done.looks[0].statistic > done.looks[0].boundary
    assert sq.reached_seeds(cells, rounds) == {0}
    tie = cells.assign(mcc=np.where(cells["source"] == "bad", cells["mcc"] + 0.4, cells["mcc"]) + rng.normal(0, 0.05, len(cells)))
    undecided = sq.replay(tie, rounds)
    assert not undecided.decided and len(undecided.looks) == 3 and not undecided.stopped
    assert sq.reached_seeds(tie, rounds) == {0, 1, 2, 3}  # the fourth round is due: its cells are missing, not unplanned


@pytest.mark.parametrize("n,ratio", [(3, 0.5), (6, 0.5), (10, 1 / 9), (30, 0.25)])
def test_corrected_t_mde_has_the_stated_power_by_simulation(n, ratio):
    rho = ratio / (1 + ratio)
    variance = 1 - rho  # the expected sample variance of the differences under the model
    mde = pw.corrected_t_mde(variance, n, ratio)
    d = _tables(mde / np.sqrt(1 - rho), n, ratio, 20000, seed=n)
    simulated = (2 * stats.t.sf(np.abs(_corrected_t(d, ratio)), n - 1) < 0.05).mean()
    ncp = mde / np.sqrt((1 / n + ratio) * variance)
    crit = stats.t.ppf(0.975, n - 1)
    exact = stats.nct.sf(crit, n - 1, ncp) + stats.nct.cdf(-crit, n - 1, ncp)
    assert simulated == pytest.approx(exact, abs=0.015)  # the simulation is the noncentral t ...
    # ... and the formula is its usual approximation: 80 % from 6 cells on, a little less with 2 degrees of freedom.
    assert exact == pytest.approx(0.80, abs=0.01 if n >= 6 else 0.04)


def test_seeds_needed_is_the_smallest_that_reaches_the_difference():
    variance, ratio, folds = 0.01, 0.5, 3
    seeds = pw.seeds_needed(0.2, variance, ratio, folds)
    assert np.isfinite(seeds) and seeds > 1
    assert pw.corrected_t_mde(variance, int(seeds) * folds, ratio) <= 0.2 < pw.corrected_t_mde(variance, int(seeds - 1) * folds, ratio)
    limit = pw.corrected_t_limit(variance, ratio)
    assert pw.seeds_needed(0.99 * limit, variance, ratio, folds) == np.inf  # the fold correlation does not shrink with seeds


def test_mcnemar_mde_has_the_stated_power_by_simulation():
    from statsmodels.stats.contingency_tables import mcnemar

    n, psi = 400, 0.2
    d = pw.mcnemar_mde(n, psi)
    assert pw.mcnemar_images_needed(d, psi) == pytest.approx(n, abs=1)
    rng = np.random.default_rng(5)
    p10, p01 = (psi + d) / 2, (psi - d) / 2
    rejected = []
    for _ in range(1000):
        counts = rng.multinomial(n, [p10, p01, 1 - psi])
        table = [[0, counts[0]], [counts[1], counts[2]]]
        rejected.append(mcnemar(table, exact=False, correction=False).pvalue < 0.05)
    assert np.mean(rejected) == pytest.approx(0.80, abs=0.04)


def test_power_table_reads_the_comparisons_spread_back():
    from benchmark.report import statistics as st

    rng = np.random.default_rng(1)
    a, b = rng.normal(0.6, 0.05, 6), rng.normal(0.55, 0.05, 6)
    ratio = 20 / 68
    test = st.corrected_ttest(a, b, ratio)
    cells = pd.DataFrame([{"source": s, "backbone": "c", "strategy": "full", "fraction": 1.0, "folds": 3, "test_rows": 20,
                           "train_rows": 68} for s in ("x", "y") for _ in range(6)])
    board = pd.DataFrame([{"source": s, "backbone": "c", "strategy": "full", "fraction": 1.0} for s in ("x", "y")])
    compared = pd.DataFrame([{"family": "source", "a": "x/c/full", "b": "y/c/full", **test.as_dict(), "test_family": test.test,
                              "p_holm": test.p_value}])
    table = pw.power_table(cells, board, compared)
    variance = np.var(a - b, ddof=1)
    assert table["mde"].iloc[0] == pytest.approx(pw.corrected_t_mde(variance, 6, ratio), rel=1e-6)
    assert table["needed"].iloc[0].startswith("3 folds x ") or table["needed"].iloc[0].startswith("out of reach")

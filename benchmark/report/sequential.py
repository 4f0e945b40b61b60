"""Group-sequential testing of the top rows' comparison: look after every round of seeds, stop when it is decided.

    # in a suite:  repeats: {until: decided, max_seeds: 5}
    medtl benchmark my-suite.yaml     # adds seeds (new repeated k-fold draws) in rounds; benchmark/run/repeats.py

Why a boundary: testing after every round at alpha = 0.05 and stopping at the first p < 0.05 rejects a
true null far more often than 5 % (five looks: about 14 %). An alpha-spending design fixes how much of
alpha each look may use, so the whole sequence keeps its 5 %.

Design (Lan & DeMets 1983, O'Brien-Fleming-type spending function): after look k the cumulative
two-sided alpha spent is alpha(t_k) = 4 - 4 Phi(z_{1-alpha/4} / sqrt(t_k)) (each side alpha/2, as
gsDesign's sfLDOF), with t_k the information fraction of look k. For the corrected resampled t-test (statistics.corrected_ttest) the variance of
the mean difference over n cells is (1/n + n_test/n_train) * s^2, so the information is
I(n) = 1 / (1/n + r) and t_k = I(n_k) / I(n_K): more seeds bring less and less information, because
the shared training rows keep the fold scores correlated however many draws are made.

Boundaries, two ways:
- `normal_boundaries`: the textbook computation for z statistics with known variance. Cumulative z
  statistics are jointly normal with Corr(Z_i, Z_j) = sqrt(t_i / t_j) (i < j); boundary c_k solves
  P(|Z_1| < c_1, ..., |Z_{k-1}| < c_{k-1}, |Z_k| >= c_k) = alpha(t_k) - alpha(t_{k-1}), with the
  box probabilities from scipy.stats.multivariate_normal. Checked against the published
  Lan-DeMets O'Brien-Fleming boundaries in tests/benchmark/test_power.py.
- `ttest_boundaries`, the one the suites use: the corrected t statistics have n_k - 1 degrees of
  freedom (2 at a first look of 3 folds x 1 seed), and their variance estimates change from look to
  look, so they are neither normal nor correlated as sqrt(t_i / t_j). Mapping each t to the normal
  quantile of its p-value and using the normal boundaries rejected a true null in 6.8 % of 40,000
  simulations (3 folds, 1 to 5 seeds). So the boundaries are calibrated on the t statistics' own joint
  null distribution under the model the corrected t-test assumes (Nadeau & Bengio 2003: every pair of
  cells correlated with rho = r / (1 + r)), which is free of the unknown variance and needs only the
  cells per look and r: simulated (SIMULATIONS draws, fixed seed, so a report's replay gives the same
  boundaries), each boundary the quantile of |T_k| among the draws still running that spends the
  look's share of alpha. No stopping for futility: a comparison that is not decided runs to the last
  look, whose boundary gives the verdict.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import optimize, stats

from benchmark.report.statistics import ALPHA, corrected_ttest

SIMULATIONS = 100_000  # null draws for the t boundaries: Monte Carlo error of the spent alpha ~ 0.0007
SIMULATION_SEED = 20240523  # fixed: the same looks give the same boundaries in the run and in every report
DESIGN = "group-sequential corrected t-test, Lan-DeMets O'Brien-Fleming-type alpha spending"


def obrien_fleming_spent(t, alpha: float = ALPHA) -> np.ndarray:
    """Lan-DeMets O'Brien-Fleming-type spending, symmetric two-sided: each side spends alpha/2 as
    2 - 2 Phi(z_{1-alpha/4} / sqrt(t)) (gsDesign's sfLDOF), so the two sides together spend this much up to t."""
    t = np.asarray(t, dtype=float)
    if np.any(t <= 0) or np.any(t > 1 + 1e-12):
        raise ValueError(f"information fractions must lie in (0, 1], got {t.tolist()}")
    return 4.0 - 4.0 * stats.norm.cdf(stats.norm.ppf(1 - alpha / 4) / np.sqrt(np.minimum(t, 1.0)))


def information_fractions(cells: np.ndarray, ratio: float) -> np.ndarray:
    """t_k = I(n_k) / I(n_K) with I(n) = 1 / (1/n + ratio): the corrected t-test's information after n_k cells."""
    n = np.asarray(cells, dtype=float)
    if np.any(np.diff(n) <= 0) or n[0] < 2:
        raise ValueError(f"cells per look must increase from at least 2, got {n.tolist()}")
    info = 1.0 / (1.0 / n + ratio)
    return info / info[-1]


def normal_boundaries(fractions, alpha: float = ALPHA) -> np.ndarray:
    """Two-sided z boundaries c_1..c_K for looks at information fractions `fractions` (known variance)."""
    t = np.asarray(fractions, dtype=float)
    spent = obrien_fleming_spent(t, alpha)
    cov = np.sqrt(np.minimum.outer(t, t) / np.maximum.outer(t, t))
    bounds: list[float] = [float(stats.norm.ppf(1 - spent[0] / 2))]
    for k in range(1, len(t)):
        # A fixed seed for the integration's quasi-Monte-Carlo points keeps the root search deterministic.
        mvn = stats.multivariate_normal(np.zeros(k + 1), cov[: k + 1, : k + 1], seed=0, abseps=1e-6, releps=1e-6)

        def still_running(c: float) -> float:
            upper = np.array([*bounds, c])
            return mvn.cdf(upper, lower_limit=-upper) - (1 - spent[k])

        bounds.append(float(optimize.brentq(still_running, 0.1, 12.0, xtol=1e-6)))
    return np.asarray(bounds)


def _null_statistics(cells: np.ndarray, ratio: float, simulations: int, seed: int) -> np.ndarray:
    """Corrected t statistics at each look of `simulations` null tables: d_j = sqrt(rho) Z_0 + sqrt(1 - rho) e_j."""
    rng = np.random.default_rng(seed)
    rho = ratio / (1.0 + ratio)
    shared = np.sqrt(rho) * rng.standard_normal(simulations)
    total, squares, done = np.zeros(simulations), np.zeros(simulations), 0
    out = np.empty((simulations, len(cells)))
    for k, n in enumerate(cells):
        new = shared[:, None] + np.sqrt(1 - rho) * rng.standard_normal((simulations, int(n) - done))
        total += new.sum(1)
        squares += (new ** 2).sum(1)
        done = int(n)
        mean = total / n
        var = (squares - n * mean ** 2) / (n - 1)
        out[:, k] = mean / np.sqrt((1.0 / n + ratio) * var)
    return out


def ttest_boundaries(cells, ratio: float, alpha: float = ALPHA, *, simulations: int = SIMULATIONS,
                     seed: int = SIMULATION_SEED) -> np.ndarray:
    """Boundaries on |corrected t| for looks after `cells` (cumulative cells per look, increasing), calibrated by simulation."""
    cells = np.asarray(cells, dtype=int)
    spent = obrien_fleming_spent(information_fractions(cells, ratio), alpha)
    stat = np.abs(_null_statistics(cells, ratio, simulations, seed))
    running = np.ones(simulations, dtype=bool)
    bounds, used = [], 0.0
    for k in range(len(cells)):
        share = spent[k] - used  # alpha this look may spend
        values = np.sort(stat[running, k])[::-1]
        m = int(round(share * simulations))
        bound = float(values[m - 1]) if m >= 1 else float(values[0]) + 1e-9  # the m-th largest crosses
        running &= stat[:, k] < bound
        used = 1.0 - running.mean()
        bounds.append(bound)
    return np.asarray(bounds)


@dataclass(frozen=True)
class Look:
    """One interim analysis of the top rows' comparison."""

    look: int  # 1-based
    seeds: int  # seeds (repeated k-fold draws) in it
    cells: int  # paired cells (folds x seeds both rows finished)
    fraction: float  # information fraction t_k
    boundary: float  # |t| at or above which the comparison is decided at this look
    statistic: float  # the corrected t statistic of a - b
    difference: float  # mean MCC difference a - b
    p_nominal: float  # the fixed-sample p-value (not adjusted for looking)
    decided: bool  # |statistic| >= boundary


def sequential_looks(differences_per_round, ratio: float, planned_cells, seeds_per_look, alpha: float = ALPHA) -> list[Look]:
    """Replay the design over rounds of paired differences a - b (one array per completed round, the new cells
    of that round), stopping at the first decided look. `planned_cells` / `seeds_per_look`: cumulative cells
    and seeds of every planned look (the maximum design); the boundaries come from the planned cells, the
    statistic from the cells that finished."""
    planned = np.asarray(planned_cells, dtype=int)
    bounds = ttest_boundaries(planned, ratio, alpha)
    fractions = information_fractions(planned, ratio)
    looks, seen = [], np.empty(0)
    for k, round_diff in enumerate(differences_per_round):
        seen = np.concatenate([seen, np.asarray(round_diff, dtype=float)])
        if k >= len(planned):
            break
        if len(seen) < 2:  # failed cells left too few pairs: nothing to test at this look
            looks.append(Look(k + 1, int(seeds_per_look[k]), len(seen), float(fractions[k]), float(bounds[k]), np.nan,
                              float(seen.mean()) if len(seen) else np.nan, np.nan, False))
            continue
        test = corrected_ttest(seen, np.zeros_like(seen), ratio)
        decided = bool(abs(test.statistic) >= bounds[k])
        looks.append(Look(k + 1, int(seeds_per_look[k]), len(seen), float(fractions[k]), float(bounds[k]), float(test.statistic),
                          float(seen.mean()), float(test.p_value), decided))
        if decided:
            break
    return looks


ROW = ("source", "backbone", "strategy", "fraction")  # as benchmark.report.results.ROW_KEYS (not imported: results imports us)


@dataclass(frozen=True)
class Replay:
    """The sequential design replayed over a suite's finished cells."""

    pair: tuple  # (row a, row b) as ROW tuples: the two best rows by mean MCC at the first look, fixed from then on
    looks: list  # Look per analysed round, up to the first decided one
    planned_looks: int  # K: the suite's own seeds, then one look per added seed up to max_seeds
    ratio: float  # test / training rows of the pair's cells (the corrected t-test's r)
    folds: int

    @property
    def decided(self) -> bool:
        return bool(self.looks) and self.looks[-1].decided

    @property
    def stopped(self) -> bool:
        """No more rounds: decided, or the last planned look analysed."""
        return self.decided or len(self.looks) >= self.planned_looks


def _rows(cells):
    return [tuple(r) for r in cells[list(ROW)].drop_duplicates().itertuples(index=False)]


def replay(cells, rounds) -> Replay | None:
    """Replay the design over `cells` (finished fine-tuning cells: ROW keys, fold, seed, mcc, folds, test_rows,
    train_rows) for the planned cumulative seeds `rounds`; None when the first look has fewer than two rows.
    A round is analysed once any of its new seeds' cells finished."""
    first = cells[cells["seed"].isin(rounds[0])]
    if len(_rows(first)) < 2:
        return None
    means = first.groupby(list(ROW), sort=False)["mcc"].mean().sort_values(ascending=False, kind="stable")
    pair = (tuple(means.index[0]), tuple(means.index[1]))
    mine = [cells[np.logical_and.reduce([(cells[k] == v).to_numpy() for k, v in zip(ROW, row)])] for row in pair]
    paired = mine[0].merge(mine[1], on=["fold", "seed"], suffixes=("_a", "_b"))
    folds = int(paired["folds_a"].iloc[0]) if len(paired) else int(first["folds"].iloc[0])
    ratio = float((paired["test_rows_a"] / paired["train_rows_a"]).mean()) if len(paired) else float("nan")
    if not np.isfinite(ratio) or ratio <= 0:
        ratio = 1.0 / max(folds - 1, 1)
    differences, previous = [], ()
    for seeds in rounds:
        new = [s for s in seeds if s not in previous]
        if not cells["seed"].isin(new).any():
            break
        part = paired[paired["seed"].isin(new)]
        differences.append((part["mcc_a"] - part["mcc_b"]).to_numpy(float))
        previous = seeds
    planned = [folds * len(s) for s in rounds]
    looks = sequential_looks(differences, ratio, planned, [len(s) for s in rounds])
    return Replay(pair, looks, len(rounds), ratio, folds)


def reached_seeds(cells, rounds) -> set:
    """Seeds of the rounds the design reached (all planned seeds up to the stopping look, or up to the last round run)."""
    done = replay(cells, rounds) if len(cells) else None
    if done is None or not done.looks:
        return set(rounds[0])
    last = len(done.looks) if done.stopped else min(len(done.looks) + 1, len(rounds))  # the next round may be under way
    return set(rounds[last - 1])


def sequential_section(cells, rounds):
    """The report's account of a `repeats` suite: design, planned and analysed looks, the decision."""
    import pandas as pd

    from benchmark.report.render import Section

    section = Section("Repeats until decided (group-sequential design)")
    if len(rounds) < 2:
        section.paragraphs.append("Fixed design: this suite has no `repeats:`, its seeds were set in advance and its comparisons "
                                  "were tested once.")
        return section
    done = replay(cells, rounds) if len(cells) else None
    section.paragraphs.append(
        f"Design: {DESIGN}, two-sided alpha {ALPHA}; {len(rounds)} planned looks (the suite's {len(rounds[0])} seed(s), then one "
        f"seed, a new repeated k-fold draw, per round up to {len(rounds[-1])}). The comparison is the corrected t-test of the two "
        "best rows by mean MCC at the first look, fixed from then on; boundaries on |t| are calibrated by simulation on the "
        "test's own null model (benchmark/report/sequential.py), so looking after every round keeps the 5 % error rate. The "
        "p-values of the other sections are fixed-sample ones.")
    if done is None:
        section.paragraphs.append("No look: fewer than two rows finished at the first look.")
        return section
    label = lambda row: "/".join(str(v) for v in row[:3]) + (f"@{row[3]:g}" if row[3] != 1.0 else "")  # noqa: E731
    section.paragraphs.append(
        f"Compared: {label(done.pair[0])} (a) against {label(done.pair[1])} (b); test/training ratio r = {done.ratio:.3f}. "
        + (f"Decided at look {len(done.looks)} of {done.planned_looks}: a is better than b." if done.decided and done.looks[-1].difference > 0
           else f"Decided at look {len(done.looks)} of {done.planned_looks}: b is better than a." if done.decided
           else f"Not decided after {len(done.looks)} of {done.planned_looks} looks: no significant difference at the last boundary."
           if done.stopped else f"Under way: {len(done.looks)} of {done.planned_looks} looks analysed."))
    section.tables.append(("Looks", pd.DataFrame([vars(look) for look in done.looks])))
    return section

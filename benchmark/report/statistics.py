"""Statistics for the report: intervals, paired tests with effect sizes, Holm, chance floors, ranks.

    medtl report benchmark/suites/smoke.yaml     # the report calls these; they never touch MLflow

Pure functions over numpy arrays and pandas frames. The tests come from scipy and statsmodels
wherever those have them (t, Wilcoxon, McNemar, Holm, Friedman, the studentized range); two do
not exist in a maintained package and are written here, each checked in
tests/benchmark/test_statistics.py against a worked example and a simulation:

- the corrected resampled t-test (Nadeau & Bengio 2003, "Inference for the generalization error";
  the form of Bouckaert & Frank 2004): k-fold training sets overlap, so fold scores are positively
  correlated and the plain paired t-test rejects far too often; the variance is inflated by
  (1/n + n_test/n_train).
- DeLong's test for two correlated AUCs (DeLong et al. 1988, in the fast form of Sun & Xu 2014):
  scikit-learn, scipy and statsmodels compute AUCs but compare none.

Every test returns a `Comparison`, which carries an effect size next to its p-value.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy import stats

ALPHA = 0.05
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Summary:
    """Mean of one metric over folds x seeds with its sample spread and t-interval."""

    mean: float
    std: float  # ddof=1; NaN for a single value (one cell has no spread)
    low: float  # 95 % t-interval of the mean, clipped to the metric's range; NaN below two values
    high: float
    n: int
    clipped: bool = False  # True when the t-interval ran past the metric's range and was cut at its bound


def mean_ci(values, confidence: float = CONFIDENCE, bounds: tuple[float, float] | None = None) -> Summary:
    """Mean, sample std and t-interval of `values` (NaNs dropped: a missing metric is not a zero).

    `bounds` (e.g. (-1, 1) for MCC, (0, 1) for a rate) clip the interval to the metric's range. Why a
    clipped t-interval rather than a bootstrap percentile interval: a suite has 3 to 10 cells per row,
    and a percentile bootstrap over 3 values has 10 distinct resamples and is far too narrow (its
    coverage at n = 5 is near 80 %, not 95 %); the t-interval keeps its coverage, and clipping only
    removes values the metric cannot take, so the clipped interval covers the mean at least as often.
    """
    x = np.asarray(values, dtype=float)
    x = x[~np.isnan(x)]
    n = len(x)
    if n == 0:
        return Summary(np.nan, np.nan, np.nan, np.nan, 0)
    mean = float(x.mean())
    if n == 1:
        return Summary(mean, np.nan, np.nan, np.nan, 1)
    std = float(x.std(ddof=1))
    half = stats.t.ppf((1 + confidence) / 2, n - 1) * std / np.sqrt(n)
    low, high = mean - half, mean + half
    if bounds is None:
        return Summary(mean, std, low, high, n)
    clipped = bool(low < bounds[0] or high > bounds[1])
    return Summary(mean, std, max(low, bounds[0]), min(high, bounds[1]), n, clipped)


@dataclass(frozen=True)
class Comparison:
    """One paired test of row a against row b; `difference` is a - b."""

    test: str  # which test
    statistic: float  # its statistic (t, W, chi2/binomial count, z)
    p_value: float  # two-sided, unadjusted
    difference: float  # a - b in the metric's units (accuracy for McNemar, AUC for DeLong)
    low: float  # 95 % CI of the difference (NaN where the test has none)
    high: float
    effect_name: str  # what `effect` is
    effect: float  # effect size beside the p-value
    n: int  # pairs (cells) or test images

    def as_dict(self) -> dict:
        return asdict(self)


def _paired(a, b) -> np.ndarray:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired tests need two 1-D arrays of equal length, got shapes {a.shape} and {b.shape}")
    if len(a) < 2:
        raise ValueError(f"paired tests need at least 2 pairs, got {len(a)}")
    return a - b


def cohens_dz(a, b) -> float:
    """Cohen's d_z: mean paired difference over the differences' sample std (0 if they do not vary)."""
    d = _paired(a, b)
    sd = d.std(ddof=1)
    return float(d.mean() / sd) if sd > 0 else (0.0 if d.mean() == 0 else float(np.sign(d.mean()) * np.inf))


def corrected_ttest(a, b, test_train_ratio: float, confidence: float = CONFIDENCE) -> Comparison:
    """Nadeau & Bengio's corrected resampled t-test for scores of two models on the same k-fold x seeds splits.

    t = mean(d) / sqrt((1/n + n_test/n_train) * var(d)), with n-1 degrees of freedom, where d are
    the n paired differences and n_test/n_train is the ratio of test to training rows of one split
    (1/(k-1) for plain k-fold). The CI of the difference uses the same corrected standard error.
    """
    d = _paired(a, b)
    if not test_train_ratio > 0:
        raise ValueError(f"test_train_ratio must be positive (test rows / training rows), got {test_train_ratio}")
    n, mean, var = len(d), float(d.mean()), float(d.var(ddof=1))
    se = np.sqrt((1.0 / n + test_train_ratio) * var)
    if se == 0:
        t, p = (0.0, 1.0) if mean == 0 else (float(np.sign(mean) * np.inf), 0.0)
    else:
        t = mean / se
        p = float(2 * stats.t.sf(abs(t), n - 1))
    half = stats.t.ppf((1 + confidence) / 2, n - 1) * se
    return Comparison("corrected t-test", float(t), p, mean, mean - half, mean + half, "Cohen's d_z", cohens_dz(a, b), n)


def rank_biserial(a, b) -> float:
    """Matched-pairs rank-biserial correlation (Kerby 2014): (R+ - R-) / (R+ + R-) over non-zero differences."""
    d = _paired(a, b)
    d = d[d != 0]
    if len(d) == 0:
        return 0.0
    ranks = stats.rankdata(np.abs(d))
    return float((ranks[d > 0].sum() - ranks[d < 0].sum()) / ranks.sum())


def wilcoxon_test(a, b) -> Comparison:
    """scipy's Wilcoxon signed-rank test (two-sided) with the rank-biserial effect size.

    No interval: the difference's CI is the corrected t-test's; here `low`/`high` are NaN.
    """
    d = _paired(a, b)
    if np.all(d == 0):
        stat, p = 0.0, 1.0  # scipy refuses all-zero differences; identical scores are no evidence
    else:
        result = stats.wilcoxon(a, b)
        stat, p = float(result.statistic), float(result.pvalue)
    return Comparison("Wilcoxon signed-rank", stat, p, float(d.mean()), np.nan, np.nan, "rank-biserial r", rank_biserial(a, b), len(d))


# McNemar's exact binomial version below this many discordant pairs; the chi-square above it.
MCNEMAR_EXACT_BELOW = 25


def mcnemar_test(correct_a, correct_b, confidence: float = CONFIDENCE) -> Comparison:
    """McNemar's test on whether each test image was classified correctly by a and by b (same images).

    statsmodels' `mcnemar`: the exact binomial test below 25 discordant pairs, above it the
    chi-square without continuity correction (Fagerland et al. 2013: the corrected one is
    needlessly conservative; tests/benchmark/test_statistics.py measures both). Effect: the odds ratio b/c of the
    discordant counts (a right & b wrong over a wrong & b right), with a Wald CI on the log scale
    (0.5 added to both counts when one is zero, Haldane's correction). The difference and its CI
    are in accuracy (Wald interval of the paired difference of proportions).
    """
    from statsmodels.stats.contingency_tables import mcnemar

    a, b = np.asarray(correct_a, dtype=bool), np.asarray(correct_b, dtype=bool)
    if a.shape != b.shape or a.ndim != 1 or len(a) == 0:
        raise ValueError(f"McNemar needs two equal-length 1-D arrays of per-image correctness, got {a.shape} and {b.shape}")
    n = len(a)
    table = np.array([[np.sum(a & b), np.sum(a & ~b)], [np.sum(~a & b), np.sum(~a & ~b)]])
    only_a, only_b = int(table[0, 1]), int(table[1, 0])
    if only_a + only_b == 0:
        stat, p = 0.0, 1.0
    else:
        exact = only_a + only_b < MCNEMAR_EXACT_BELOW
        result = mcnemar(table, exact=exact, correction=False)
        stat, p = float(result.statistic), float(result.pvalue)
    ca, cb = (only_a, only_b) if only_a and only_b else (only_a + 0.5, only_b + 0.5)
    odds = ca / cb
    diff = (only_a - only_b) / n
    # Var of the paired difference of proportions: (b + c - (b - c)^2 / n) / n^2.
    se = np.sqrt(max(only_a + only_b - (only_a - only_b) ** 2 / n, 0.0)) / n
    z = stats.norm.ppf((1 + confidence) / 2)
    return Comparison("McNemar" + (" (exact)" if only_a + only_b < MCNEMAR_EXACT_BELOW else ""), stat, p, diff,
                      diff - z * se, diff + z * se, "odds ratio", float(odds), n)


def _midrank_components(positives: np.ndarray, negatives: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """AUC and DeLong's structural components V10 (per positive) and V01 (per negative), Sun & Xu 2014."""
    m, n = len(positives), len(negatives)
    both = np.concatenate([positives, negatives])
    rank_all = stats.rankdata(both)  # midranks: ties count one half, as in the Mann-Whitney AUC
    rank_pos, rank_neg = stats.rankdata(positives), stats.rankdata(negatives)
    v10 = (rank_all[:m] - rank_pos) / n  # share of negatives below each positive
    v01 = 1.0 - (rank_all[m:] - rank_neg) / m  # share of positives above each negative
    auc = float(v10.mean())
    return auc, v10, v01


def delong_test(scores_a, scores_b, targets, confidence: float = CONFIDENCE) -> Comparison:
    """DeLong's test for two correlated AUCs on the same binary test set (scores: probability of class 1).

    Refuses multiclass targets: one-vs-rest AUCs of different classes split the images into
    different positive/negative groups, and DeLong's two-sample U-statistic covariance does not
    cover their macro mean. Compare multiclass AUCs with the fold-level tests instead.
    """
    y = np.asarray(targets)
    labels = np.unique(y)
    if len(labels) != 2 or not set(labels.tolist()) <= {0, 1}:
        raise ValueError(f"DeLong's test needs binary targets 0/1, got classes {labels.tolist()}; for a multiclass task "
                         "compare the AUCs with the corrected t-test over folds x seeds")
    a, b = np.asarray(scores_a, dtype=float), np.asarray(scores_b, dtype=float)
    if a.shape != y.shape or b.shape != y.shape:
        raise ValueError(f"scores and targets must have one value per image, got {a.shape}, {b.shape}, {y.shape}")
    pos, neg = y == 1, y == 0
    m, n = int(pos.sum()), int(neg.sum())
    aucs, v10s, v01s = [], [], []
    for s in (a, b):
        auc, v10, v01 = _midrank_components(s[pos], s[neg])
        aucs.append(auc)
        v10s.append(v10)
        v01s.append(v01)
    s10 = np.cov(np.vstack(v10s)) if m > 1 else np.zeros((2, 2))
    s01 = np.cov(np.vstack(v01s)) if n > 1 else np.zeros((2, 2))
    cov = s10 / m + s01 / n
    diff = aucs[0] - aucs[1]
    var = float(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    if var <= 0:
        z, p = (0.0, 1.0) if diff == 0 else (float(np.sign(diff) * np.inf), 0.0)
    else:
        z = diff / np.sqrt(var)
        p = float(2 * stats.norm.sf(abs(z)))
    half = stats.norm.ppf((1 + confidence) / 2) * np.sqrt(max(var, 0.0))
    return Comparison("DeLong", float(z), p, diff, diff - half, diff + half, "AUC difference", diff, m + n)


def delong_variance(scores, targets) -> tuple[float, float]:
    """AUC of one binary scorer and DeLong's variance estimate of it."""
    y = np.asarray(targets)
    s = np.asarray(scores, dtype=float)
    auc, v10, v01 = _midrank_components(s[y == 1], s[y == 0])
    return auc, float(v10.var(ddof=1) / len(v10) + v01.var(ddof=1) / len(v01))


def holm(p_values) -> np.ndarray:
    """Holm-adjusted p-values (statsmodels' `multipletests`); NaNs stay NaN and are not counted."""
    from statsmodels.stats.multitest import multipletests

    p = np.asarray(p_values, dtype=float)
    out = np.full_like(p, np.nan)
    ok = ~np.isnan(p)
    if ok.any():
        out[ok] = multipletests(p[ok], alpha=ALPHA, method="holm")[1]
    return out


CHANCE_STRATEGIES = ("most_frequent", "stratified")


def chance_scores(train_targets, test_targets, num_classes: int, seed: int = 0,
                  strategies: tuple[str, ...] = CHANCE_STRATEGIES) -> dict[str, dict[str, float]]:
    """Chance floors: scikit-learn's DummyClassifier (each of `strategies`) fitted on `train_targets`
    and scored on `test_targets` with the cells' own metric collection (tasks/training/metrics.py).
    `seed` is the DummyClassifier's random_state (only `stratified` draws at random)."""
    import torch
    from sklearn.dummy import DummyClassifier

    from tasks.data.index import TaskMeta
    from tasks.training.metrics import classification_metrics

    meta = TaskMeta("chance", tuple(str(i) for i in range(num_classes)), "multiclass")
    train_y, test_y = np.asarray(train_targets, dtype=int), np.asarray(test_targets, dtype=int)
    out = {}
    for strategy in strategies:
        dummy = DummyClassifier(strategy=strategy, random_state=seed).fit(np.zeros((len(train_y), 1)), train_y)
        probs = np.zeros((len(test_y), num_classes))
        probs[:, dummy.classes_] = dummy.predict_proba(np.zeros((len(test_y), 1)))
        metrics = classification_metrics(meta)
        metrics.update(torch.tensor(probs, dtype=torch.float32), torch.tensor(test_y))
        out[strategy] = {k: float(v) for k, v in metrics.compute().items()}
    return out


@dataclass(frozen=True)
class Ranking:
    """Average ranks of methods (columns) over blocks (rows), Friedman's test and Nemenyi's critical difference."""

    ranks: pd.Series  # average rank per method, 1 = best
    friedman_p: float  # NaN below 3 methods or 2 blocks
    critical_difference: float  # Nemenyi CD at ALPHA; mean ranks further apart differ
    nemenyi: pd.DataFrame  # pairwise Nemenyi p-values (scikit-posthocs); empty when not computable
    blocks: int


def nemenyi_cd(methods: int, blocks: int, alpha: float = ALPHA) -> float:
    """Demšar (2006): CD = q_alpha * sqrt(k (k + 1) / (6 N)), q_alpha = studentized range quantile / sqrt(2)."""
    q = stats.studentized_range.ppf(1 - alpha, methods, np.inf) / np.sqrt(2)
    return float(q * np.sqrt(methods * (methods + 1) / (6.0 * blocks)))


def average_ranks(scores: pd.DataFrame, alpha: float = ALPHA) -> Ranking:
    """Ranks of the columns of `scores` within each row (higher score = better = rank 1), averaged."""
    scores = scores.dropna(axis=0, how="any")
    k, n = scores.shape[1], scores.shape[0]
    ranks = scores.rank(axis=1, ascending=False).mean(axis=0).sort_values()
    friedman, nemenyi = np.nan, pd.DataFrame()
    if k >= 3 and n >= 2:
        friedman = float(stats.friedmanchisquare(*[scores[c].to_numpy() for c in scores.columns]).pvalue)
        import scikit_posthocs as sp

        nemenyi = sp.posthoc_nemenyi_friedman(scores.to_numpy())
        nemenyi.index = nemenyi.columns = list(scores.columns)
    cd = nemenyi_cd(k, n, alpha) if k >= 2 and n >= 1 else np.nan
    return Ranking(ranks, friedman, cd, nemenyi, n)


def friedman_absent_reason(methods: int, blocks: int) -> str:
    """Why `average_ranks` has no Friedman p-value for this many methods and blocks ("" when it has one)."""
    if methods >= 3 and blocks >= 2:
        return ""
    needs = []
    if methods < 3:
        needs.append(f"at least 3 compared methods (this suite has {methods}; with 2, the paired tests below answer instead)")
    if blocks < 2:
        needs.append(f"at least 2 settings to rank them in (this suite has {blocks})")
    return "no Friedman test: it needs " + " and ".join(needs)

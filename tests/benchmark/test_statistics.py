"""benchmark.report.statistics against scipy/statsmodels references, worked examples and simulated tables (no training)."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.metrics import matthews_corrcoef, roc_auc_score

from benchmark.report.statistics import (
    average_ranks,
    chance_scores,
    cohens_dz,
    corrected_ttest,
    delong_test,
    delong_variance,
    friedman_absent_reason,
    holm,
    mcnemar_test,
    mean_ci,
    nemenyi_cd,
    rank_biserial,
    wilcoxon_test,
)

SIMULATIONS = 2000
# Rejection rate of a calibrated test over SIMULATIONS null tables: Binomial(S, 0.05) / S, whose
# sd is sqrt(0.05 * 0.95 / 2000) = 0.0049; four sd either side keeps a seeded run far from flaky.
TOLERANCE = 4 * np.sqrt(0.05 * 0.95 / SIMULATIONS)


def _rejection_rate(draw_p, simulations=SIMULATIONS) -> float:
    return float(np.mean([draw_p() < 0.05 for _ in range(simulations)]))


def test_mean_ci_is_the_t_interval():
    x = np.array([0.61, 0.55, 0.70, 0.64, 0.58, 0.66])
    s = mean_ci(x)
    low, high = stats.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=stats.sem(x))
    assert s.mean == pytest.approx(x.mean()) and s.std == pytest.approx(x.std(ddof=1))
    assert (s.low, s.high) == pytest.approx((low, high)) and s.n == 6
    one = mean_ci([0.5, np.nan])  # a missing value is dropped, not read as zero
    assert one.n == 1 and one.mean == 0.5 and np.isnan(one.std) and np.isnan(one.low)


def test_mean_ci_clips_to_the_metrics_range_and_says_so():
    x = np.array([0.99, 0.93, 1.0])  # the t-interval on 3 values runs to about 1.08
    s, free = mean_ci(x, bounds=(-1.0, 1.0)), mean_ci(x)
    assert free.high > 1 and s.high == 1.0 and s.low == pytest.approx(free.low) and s.clipped and not free.clipped
    assert s.mean == pytest.approx(x.mean()) and s.std == pytest.approx(free.std)
    low = mean_ci([-0.98, -0.9, -1.0], bounds=(-1.0, 1.0))
    assert low.low == -1.0 and low.clipped
    inside = mean_ci([0.4, 0.5, 0.6], bounds=(0.0, 1.0))
    unbounded = mean_ci([0.4, 0.5, 0.6])
    assert not inside.clipped and (inside.low, inside.high) == pytest.approx((unbounded.low, unbounded.high))


def test_friedman_absence_is_explained():
    assert friedman_absent_reason(3, 2) == ""
    assert "at least 3 compared methods (this suite has 2" in friedman_absent_reason(2, 4)
    assert "at least 2 settings" in friedman_absent_reason(4, 1)
    assert np.isnan(average_ranks(pd.DataFrame({"a": [0.5, 0.6], "b": [0.4, 0.7]})).friedman_p)  # what the reason stands for


def test_corrected_ttest_worked_example():
    # Nadeau & Bengio (2003), in the form of Bouckaert & Frank (2004):
    #   t = mean(d) / sqrt((1/n + n2/n1) * s^2),  df = n - 1.
    # 5-fold CV, one seed: n = 5, n2/n1 = 1/4. Differences d = .02 .05 .01 .04 .03:
    #   mean(d) = 0.03; s^2 = (.0001 + .0004 + .0004 + .0001 + 0) / 4 = 0.00025
    #   corrected variance = (1/5 + 1/4) * 0.00025 = 0.45 * 0.00025 = 0.0001125 = 0.03^2 / 8
    #   t = 0.03 / (0.03 / sqrt(8)) = 2 * sqrt(2) = 2.8284;  the plain paired t would be
    #   0.03 / sqrt(0.00025 / 5) = 4.2426.  Two-sided p from t(4): 0.0474 (plain: 0.0132).
    #   95 % CI: 0.03 +- t_{0.975,4} * 0.010607 = 0.03 +- 2.7764 * 0.010607 = [0.00055, 0.05945].
    a = np.array([0.82, 0.85, 0.81, 0.84, 0.83])
    b = a - np.array([0.02, 0.05, 0.01, 0.04, 0.03])
    result = corrected_ttest(a, b, test_train_ratio=1 / 4)
    assert result.statistic == pytest.approx(2 * np.sqrt(2), rel=1e-9)
    assert result.p_value == pytest.approx(0.0474, abs=5e-4)
    assert result.p_value == pytest.approx(2 * stats.t.sf(2 * np.sqrt(2), 4))
    assert (result.low, result.high) == pytest.approx((0.00055, 0.05945), abs=1e-4)
    assert stats.ttest_rel(a, b).statistic == pytest.approx(4.2426, abs=1e-4)  # the uncorrected test, for contrast
    assert result.effect_name == "Cohen's d_z" and result.effect == pytest.approx(0.03 / np.sqrt(0.00025))


def test_corrected_ttest_with_zero_ratio_limit_is_scipys_paired_t():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=8), rng.normal(size=8)
    tiny = corrected_ttest(a, b, test_train_ratio=1e-12)
    assert tiny.statistic == pytest.approx(stats.ttest_rel(a, b).statistic, rel=1e-6)
    assert tiny.p_value == pytest.approx(stats.ttest_rel(a, b).pvalue, rel=1e-5)
    same = corrected_ttest(a, a, 0.25)
    assert same.p_value == 1.0 and same.difference == 0.0
    with pytest.raises(ValueError, match="test_train_ratio"):
        corrected_ttest(a, b, 0)
    with pytest.raises(ValueError, match="equal length"):
        corrected_ttest(a, b[:3], 0.25)


def test_wilcoxon_matches_scipy_and_rank_biserial_by_hand():
    a = np.array([0.71, 0.65, 0.80, 0.62, 0.77, 0.69, 0.74])
    b = np.array([0.60, 0.66, 0.70, 0.55, 0.72, 0.61, 0.75])
    result = wilcoxon_test(a, b)
    reference = stats.wilcoxon(a, b)
    assert result.p_value == pytest.approx(reference.pvalue) and result.statistic == pytest.approx(reference.statistic)
    # d = .11 -.01 .10 .07 .05 .08 -.01; |d| ranks: .01,.01 -> 1.5,1.5; .05 -> 3; .07 -> 4; .08 -> 5; .10 -> 6; .11 -> 7
    # R+ = 7 + 6 + 4 + 3 + 5 = 25, R- = 3, r = (25 - 3) / 28 = 0.7857
    assert rank_biserial(a, b) == pytest.approx(22 / 28)
    assert result.effect == pytest.approx(22 / 28) and result.effect_name == "rank-biserial r"
    assert wilcoxon_test(a, a).p_value == 1.0


def test_mcnemar_matches_statsmodels_and_odds_ratio():
    from statsmodels.stats.contingency_tables import mcnemar

    # 100 images: 60 both right, 15 only a right, 5 only b right, 20 both wrong.
    a = np.array([1] * 60 + [1] * 15 + [0] * 5 + [0] * 20, dtype=bool)
    b = np.array([1] * 60 + [0] * 15 + [1] * 5 + [0] * 20, dtype=bool)
    result = mcnemar_test(a, b)
    reference = mcnemar([[60, 15], [5, 20]], exact=True)  # 20 discordant pairs: exact binomial
    assert result.test == "McNemar (exact)" and result.p_value == pytest.approx(reference.pvalue)
    assert result.p_value == pytest.approx(2 * stats.binom.cdf(5, 20, 0.5))
    assert result.effect == pytest.approx(15 / 5) and result.difference == pytest.approx(0.10)
    many_a = np.r_[a, np.ones(20, bool)]
    many_b = np.r_[b, np.zeros(20, bool)]  # 40 discordant pairs: chi-square without continuity correction
    chi = mcnemar_test(many_a, many_b)
    assert chi.test == "McNemar" and chi.statistic == pytest.approx((35 - 5) ** 2 / 40)
    assert chi.p_value == pytest.approx(mcnemar([[60, 35], [5, 20]], exact=False, correction=False).pvalue)


def test_delong_worked_example_by_hand():
    # Positives .8 .6, negatives .7 .2.  V10 (share of negatives below each positive): 1, 0.5.
    # V01 (share of positives above each negative): 0.5, 1.  AUC = mean V10 = 0.75.
    # DeLong variance = var(V10)/m + var(V01)/n = 0.125/2 + 0.125/2 = 0.125 (ddof = 1).
    scores, y = np.array([0.8, 0.6, 0.7, 0.2]), np.array([1, 1, 0, 0])
    auc, var = delong_variance(scores, y)
    assert auc == pytest.approx(0.75) and var == pytest.approx(0.125)
    # Model b ranks perfectly (AUC 1): V10_b = 1, 1 and V01_b = 1, 1 have no variance, so
    # var(a - b) = var(a) = 0.125 and z = (0.75 - 1) / sqrt(0.125) = -0.7071.
    result = delong_test(scores, np.array([0.9, 0.8, 0.3, 0.1]), y)
    assert result.difference == pytest.approx(-0.25) and result.statistic == pytest.approx(-0.25 / np.sqrt(0.125))
    assert result.p_value == pytest.approx(2 * stats.norm.sf(0.25 / np.sqrt(0.125)))


def test_delong_agrees_with_scikit_learn_and_a_bootstrap():
    rng = np.random.default_rng(7)
    n = 300
    y = (rng.random(n) < 0.4).astype(int)
    shared = rng.normal(size=n)
    a = 1.2 * y + shared + 0.8 * rng.normal(size=n)
    b = 0.9 * y + shared + 0.8 * rng.normal(size=n)
    result = delong_test(a, b, y)
    assert result.difference == pytest.approx(roc_auc_score(y, a) - roc_auc_score(y, b))
    boot = []
    for _ in range(2000):
        i = rng.integers(0, n, n)
        boot.append(roc_auc_score(y[i], a[i]) - roc_auc_score(y[i], b[i]))
    se_delong = (result.high - result.low) / (2 * stats.norm.ppf(0.975))
    assert se_delong == pytest.approx(np.std(boot), rel=0.15)
    with pytest.raises(ValueError, match="binary"):
        delong_test(a, b, np.arange(n) % 3)


def test_holm_matches_statsmodels():
    from statsmodels.stats.multitest import multipletests

    p = np.array([0.01, 0.04, 0.03, 0.005, 0.2])
    assert holm(p) == pytest.approx(multipletests(p, method="holm")[1])
    # By hand: sorted .005 .01 .03 .04 .2 times 5 4 3 2 1 -> .025 .04 .09 .08 .2, then running max.
    assert holm(p) == pytest.approx([0.04, 0.09, 0.09, 0.025, 0.2])
    with_nan = holm([0.01, np.nan, 0.04])
    assert np.isnan(with_nan[1]) and with_nan[[0, 2]] == pytest.approx([0.02, 0.04])


def test_effect_sizes():
    a, b = np.array([3.0, 5.0, 4.0]), np.array([1.0, 2.0, 4.0])
    d = a - b
    assert cohens_dz(a, b) == pytest.approx(d.mean() / d.std(ddof=1))
    assert rank_biserial(a, b) == pytest.approx(1.0)


def test_chance_floor_scores_like_scikit_learn():
    train = np.array([0] * 60 + [1] * 30 + [2] * 10)
    test = np.array([0] * 30 + [1] * 15 + [2] * 5)
    floors = chance_scores(train, test, num_classes=3, seed=0)
    most = floors["most_frequent"]
    assert most["mcc"] == 0.0 and most["acc_micro"] == pytest.approx(0.6) and most["auc"] == pytest.approx(0.5)
    assert most["rec"] == pytest.approx(1 / 3)  # recall 1 on class 0, 0 on the others
    strat = floors["stratified"]
    from sklearn.dummy import DummyClassifier

    predicted = DummyClassifier(strategy="stratified", random_state=0).fit(np.zeros((100, 1)), train).predict(np.zeros((50, 1)))
    assert strat["mcc"] == pytest.approx(matthews_corrcoef(test, predicted), abs=1e-6)
    assert abs(strat["mcc"]) < 0.3
    draws = [chance_scores(train, test, 3, seed=s, strategies=("stratified",)) for s in range(5)]
    assert all(set(d) == {"stratified"} for d in draws) and len({d["stratified"]["mcc"] for d in draws}) > 1  # seeds differ


def test_average_ranks_friedman_and_critical_difference():
    scores = pd.DataFrame({"none": [0.5, 0.4, 0.6, 0.45], "general": [0.7, 0.6, 0.65, 0.66], "medical": [0.6, 0.65, 0.7, 0.5]})
    ranking = average_ranks(scores)
    assert ranking.ranks["general"] == pytest.approx((1 + 2 + 2 + 1) / 4) and ranking.ranks["none"] == pytest.approx(3.0)
    assert ranking.friedman_p == pytest.approx(stats.friedmanchisquare(*[scores[c] for c in scores]).pvalue)
    # Demšar 2006, Table 5: q_0.05 for k = 3 is 2.343; CD = 2.343 * sqrt(3 * 4 / (6 * 4)) = 1.657.
    assert nemenyi_cd(3, 4) == pytest.approx(2.343 * np.sqrt(12 / 24), abs=1e-3)
    assert ranking.critical_difference == pytest.approx(nemenyi_cd(3, 4))
    assert set(ranking.nemenyi.columns) == set(scores.columns)


# -- Calibration on simulated tables: no true difference -> about 5 % rejections; a planted one -> rejected.

def _kfold_differences(rng, k, shift=0.0):
    # Differences of fold scores are correlated through the overlapping training sets; Nadeau &
    # Bengio's correction assumes corr = n_test / (n_test + n_train) = 1/k for k-fold.
    rho = 1.0 / k
    shared = rng.normal() * np.sqrt(rho)
    return shift + shared + rng.normal(size=k) * np.sqrt(1 - rho)


def test_corrected_ttest_holds_its_level_where_the_plain_t_test_does_not():
    rng = np.random.default_rng(0)
    k = 10
    corrected = _rejection_rate(lambda: corrected_ttest(_kfold_differences(rng, k), np.zeros(k), 1 / (k - 1)).p_value)
    assert abs(corrected - 0.05) < TOLERANCE, corrected
    plain = _rejection_rate(lambda: stats.ttest_rel(_kfold_differences(rng, k), np.zeros(k)).pvalue, 500)
    assert plain > 0.10  # why the correction exists
    planted = _rejection_rate(lambda: corrected_ttest(_kfold_differences(rng, k, shift=2.0), np.zeros(k), 1 / (k - 1)).p_value, 200)
    assert planted > 0.8


def test_wilcoxon_holds_its_level_and_finds_a_planted_shift():
    rng = np.random.default_rng(1)
    null = _rejection_rate(lambda: wilcoxon_test(rng.normal(size=20), np.zeros(20)).p_value)
    assert abs(null - 0.05) < TOLERANCE, null
    assert _rejection_rate(lambda: wilcoxon_test(rng.normal(1.0, 1.0, size=20), np.zeros(20)).p_value, 200) > 0.8


def test_mcnemar_holds_its_level_and_finds_a_planted_difference():
    rng = np.random.default_rng(2)
    null = _rejection_rate(lambda: mcnemar_test(rng.random(200) < 0.8, rng.random(200) < 0.8).p_value)
    assert abs(null - 0.05) < TOLERANCE, null
    # The exact binomial test (few discordant pairs) is conservative by construction: never above the level.
    small = _rejection_rate(lambda: mcnemar_test(rng.random(40) < 0.8, rng.random(40) < 0.8).p_value, 1000)
    assert small <= 0.05 + TOLERANCE
    assert _rejection_rate(lambda: mcnemar_test(rng.random(200) < 0.9, rng.random(200) < 0.7).p_value, 200) > 0.8


def test_delong_holds_its_level_and_finds_a_planted_difference():
    rng = np.random.default_rng(3)
    y = np.r_[np.ones(100), np.zeros(100)].astype(int)

    def draw(gain_b):
        shared = rng.normal(size=200)  # both models see the same images: correlated scores
        return delong_test(y + 0.7 * shared + 0.7 * rng.normal(size=200),
                           gain_b * y + 0.7 * shared + 0.7 * rng.normal(size=200), y).p_value

    null = _rejection_rate(lambda: draw(1.0))
    assert abs(null - 0.05) < TOLERANCE, null
    assert _rejection_rate(lambda: draw(0.4), 200) > 0.8


def test_holm_keeps_the_familywise_error_rate():
    rng = np.random.default_rng(4)
    # Six null comparisons per table: uncorrected, about 1 - 0.95^6 = 26 % of tables have a false positive.
    # Holm's smallest adjusted p is min(1, m * min p); checked against `holm` on a few tables, then
    # used for the rate (statsmodels' multipletests runs gc.collect() per call: too slow for 2000).
    tables = rng.random((SIMULATIONS, 6))
    for row in tables[:5]:
        assert np.min(holm(row)) == pytest.approx(min(1.0, 6 * row.min()))
    familywise = float(np.mean(6 * tables.min(axis=1) < 0.05))
    assert familywise <= 0.05 + TOLERANCE
    assert float(np.mean(tables.min(axis=1) < 0.05)) > 0.2

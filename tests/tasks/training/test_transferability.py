"""LogME and H-score (tasks.training.transferability) against independent computations and planted cases."""

import numpy as np
import pytest
from scipy import optimize

from tasks.training.transferability import h_score, log_evidence, logme


def _planted(rng, n=120, d=8, classes=3, signal=3.0):
    """Features whose first two dimensions separate the classes, and features of the same shape that are noise."""
    y = rng.integers(0, classes, n)
    centres = rng.normal(0, signal, (classes, d))
    centres[:, 2:] = 0.0
    separating = centres[y] + rng.normal(0, 1, (n, d))
    return separating, rng.normal(0, 1, (n, d)), y


def _reference_max_evidence(f: np.ndarray, y: np.ndarray) -> float:
    """Maximum over (alpha, beta) of the evidence written out directly (A, its inverse and determinant built
    explicitly, no SVD): a log-spaced grid, then Nelder-Mead from the best grid point."""
    n, d = f.shape

    def evidence(log_alpha, log_beta):
        alpha, beta = np.exp(log_alpha), np.exp(log_beta)
        a = alpha * np.eye(d) + beta * f.T @ f
        a_inv = np.linalg.inv(a)
        m = beta * a_inv @ f.T @ y
        value = (d / 2 * np.log(alpha) + n / 2 * np.log(beta) - 0.5 * np.log(np.linalg.det(a))
                 - beta / 2 * np.sum((f @ m - y) ** 2) - alpha / 2 * m @ m - n / 2 * np.log(2 * np.pi))
        return value / n

    grid = np.linspace(-8, 8, 33)
    best = max(((la, lb) for la in grid for lb in grid), key=lambda p: evidence(*p))
    found = optimize.minimize(lambda p: -evidence(*p), np.array(best), method="Nelder-Mead",
                              options={"xatol": 1e-9, "fatol": 1e-12, "maxiter": 4000})
    return -found.fun


def test_logme_equals_the_directly_maximised_evidence_on_a_fixed_input():
    rng = np.random.default_rng(7)
    f = rng.normal(0, 1, (14, 3))
    f[:, 0] += np.repeat([0.0, 1.5], 7)  # a class signal, so the optimum is not at the grid's edge
    y = np.repeat([0, 1], 7)
    onehot = np.eye(2)[y]
    expected = np.mean([_reference_max_evidence(f, onehot[:, k]) for k in range(2)])
    assert logme(f, y) == pytest.approx(expected, abs=1e-4)


def test_logme_counts_every_eigenvalue_when_rows_are_fewer_than_dimensions():
    rng = np.random.default_rng(3)
    f = rng.normal(0, 1, (6, 9))  # N < D: F^T F has 3 zero eigenvalues
    y = np.array([0, 0, 0, 1, 1, 1])
    onehot = np.eye(2)[y]
    expected = np.mean([_reference_max_evidence(f, onehot[:, k]) for k in range(2)])
    assert logme(f, y) == pytest.approx(expected, abs=1e-4)


def test_log_evidence_matches_the_reference_at_a_point():
    rng = np.random.default_rng(1)
    f, y = rng.normal(0, 1, (10, 4)), rng.normal(0, 1, 10)
    alpha, beta = 0.7, 2.3
    a = alpha * np.eye(4) + beta * f.T @ f
    m = beta * np.linalg.inv(a) @ f.T @ y
    direct = (2 * np.log(alpha) + 5 * np.log(beta) - 0.5 * np.log(np.linalg.det(a)) - beta / 2 * np.sum((y - f @ m) ** 2)
              - alpha / 2 * m @ m - 5 * np.log(2 * np.pi)) / 10
    assert log_evidence(f, y, alpha, beta) == pytest.approx(direct, rel=1e-10)


def test_features_that_separate_the_classes_score_higher_than_noise():
    rng = np.random.default_rng(0)
    separating, noise, y = _planted(rng)
    assert logme(separating, y) > logme(noise, y) + 0.1
    assert h_score(separating, y) > 1.0 > h_score(noise, y) + 0.5


def test_h_score_without_shrinkage_is_the_between_class_share():
    # 1-D, two classes at -1 and +1 with no spread: all variance is between classes, so H = 1 (= C - 1).
    f = np.array([[-1.0], [-1.0], [1.0], [1.0]])
    y = np.array([0, 0, 1, 1])
    assert h_score(f, y, shrinkage=0.0) == pytest.approx(1.0)
    # With spread: between-class variance / total variance, computed by hand.
    f = np.array([[-2.0], [0.0], [1.0], [3.0]])
    between = np.mean(np.array([-1.0, -1.0, 2.0, 2.0]) ** 2) - np.mean([-1.0, -1.0, 2.0, 2.0]) ** 2
    total = np.var(f[:, 0])
    assert h_score(f, y, shrinkage=0.0) == pytest.approx(between / total)


def test_h_score_matches_its_formula_with_the_ledoit_wolf_covariance():
    from sklearn.covariance import ledoit_wolf

    rng = np.random.default_rng(5)
    separating, _, y = _planted(rng, n=40, d=30)  # few rows for the width: the plain covariance is near singular
    centred = separating - separating.mean(0)
    cov, a = ledoit_wolf(centred, assume_centered=True)
    means = np.stack([centred[y == k].mean(0) for k in range(3)])[y]
    expected = np.trace(np.linalg.inv(cov) @ ((1 - a) * np.cov(means, rowvar=False, bias=True)))
    score = h_score(separating, y)
    assert score == pytest.approx(expected, rel=1e-8)
    assert 0.0 <= score <= 2.0 + 1e-9  # at most C - 1


def test_multilabel_targets_average_per_label():
    rng = np.random.default_rng(2)
    separating, _, y = _planted(rng, classes=2)
    labels = np.stack([y, 1 - y, rng.integers(0, 2, len(y))], axis=1)
    per_label = [h_score(separating, labels[:, j]) for j in range(3)]
    assert h_score(separating, labels) == pytest.approx(np.mean(per_label))
    assert np.isfinite(logme(separating, labels))


def test_bad_inputs_say_what_is_wrong():
    with pytest.raises(ValueError, match="rows but"):
        logme(np.zeros((4, 2)), np.zeros(3))
    with pytest.raises(ValueError, match="NaN"):
        h_score(np.full((4, 2), np.nan), np.array([0, 0, 1, 1]))

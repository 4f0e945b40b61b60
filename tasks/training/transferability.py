"""Transferability before training: how well a frozen backbone's features suit a target's labels.

    >>> logme(features, targets)    # You et al. 2021, log maximum evidence per image, higher is better
    >>> h_score(features, targets)  # Bao et al. 2019, with a shrinkage covariance (Ibrahim et al. 2022)

Both take `features` (N, D) of the target's training rows (frozen backbone, no fine-tuning) and
`targets` (N,) class ids, or (N, L) 0/1 labels of a multi-label task; both are pure numpy and take
seconds at the sizes a feature cache holds.

  logme    per class (each label column, or the one-hot column of each class), a Bayesian linear
           regression of the 0/1 target on the features, y ~ N(F w, 1/beta), w ~ N(0, I/alpha);
           alpha and beta maximise the evidence p(y | F, alpha, beta) by MacKay's fixed-point
           updates (You et al. 2021, Algorithm 1), from the SVD of F once:
               gamma = sum_i beta s_i / (alpha + beta s_i)      (s_i: eigenvalues of F^T F)
               m     = beta A^-1 F^T y,  A = alpha I + beta F^T F
               alpha = gamma / m^T m,   beta = (N - gamma) / ||y - F m||^2
           and LogME = mean over classes of the maximum log evidence divided by N:
               (D/2 log alpha + N/2 log beta - 1/2 log|A| - beta/2 ||y - F m||^2 - alpha/2 m^T m
                - N/2 log 2 pi) / N.
           log|A| counts all D eigenvalues of A, also the D - rank(F) equal to alpha when N < D
           (the authors' code, which sums over the min(N, D) singular values only, leaves those out;
           both agree when N > D). Iteration stops when alpha / beta moves by under TOLERANCE
           relative (the authors stop at 1e-3 after at most 11 steps; tighter costs nothing here).
  h_score  tr(cov(f)^-1 cov(E[f | y])) (Bao et al. 2019): the between-class share of the feature
           variance, in [0, min(C - 1, D)]. cov(f) is Ledoit-Wolf shrunk (scikit-learn), since the
           plain covariance of a few hundred rows of a 512-wide feature is singular; following
           Ibrahim et al. 2022 ("Newer is not always better"), cov(E[f | y]) is scaled by the same
           (1 - shrinkage), so the score stays the plain H-score when no shrinkage is needed.
           Multi-label: the mean over labels of each label's two-class score.

LEEP (Nguyen et al. 2020) is not here: it needs the source model's own classifier outputs on the
target images (a distribution over the source's labels), and medtl's backbones drop their source
heads (ImageNet's 1000-way layer, a pretraining cell's head), keeping features only.
"""

from __future__ import annotations

import numpy as np

TOLERANCE = 1e-6  # relative change of alpha / beta that ends the fixed-point iteration
MAX_STEPS = 200  # MacKay's updates converge in a few steps (the authors: 2-3, at most 10)


def _columns(targets) -> np.ndarray:
    """(N, K) 0/1 float64 targets: the one-hot columns of class ids, or a multi-label matrix as given."""
    y = np.asarray(targets)
    if y.ndim == 1:
        classes = np.unique(y.astype(np.int64))
        return (y.astype(np.int64)[:, None] == classes[None, :]).astype(np.float64)
    return y.astype(np.float64)


def _check(features, targets) -> tuple[np.ndarray, np.ndarray]:
    f = np.asarray(features, dtype=np.float64)
    y = np.asarray(targets)
    if f.ndim != 2:
        raise ValueError(f"features must be a 2-D array (rows x feature dimension), got shape {f.shape}")
    if len(f) != len(y):
        raise ValueError(f"{len(f)} feature rows but {len(y)} targets; pass the features and targets of the same rows")
    if len(f) < 2:
        raise ValueError(f"transferability needs at least 2 rows, got {len(f)}")
    if not np.isfinite(f).all():
        raise ValueError("features contain NaN or infinite values; check the backbone's output on these images")
    return f, y


def log_evidence(features, y, alpha: float, beta: float) -> float:
    """The log evidence log p(y | F, alpha, beta) / N of one target column (the module docstring's formula),
    computed directly (no SVD); `logme` maximises it over alpha and beta."""
    f = np.asarray(features, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    n, d = f.shape
    a = alpha * np.eye(d) + beta * f.T @ f
    m = beta * np.linalg.solve(a, f.T @ y)
    residual = float(((y - f @ m) ** 2).sum())
    _, logdet = np.linalg.slogdet(a)
    evidence = (d / 2 * np.log(alpha) + n / 2 * np.log(beta) - logdet / 2 - beta / 2 * residual
                - alpha / 2 * float(m @ m) - n / 2 * np.log(2 * np.pi))
    return float(evidence / n)


def _max_evidence(u: np.ndarray, sigma: np.ndarray, n: int, d: int, y: np.ndarray) -> tuple[float, float, float]:
    """(evidence / N, alpha, beta) at the fixed point, for one target column, given F = U diag(sqrt(sigma)) V^T."""
    x2 = (u.T @ y) ** 2  # y's energy along each left singular vector
    rest = max(float(y @ y - x2.sum()), 0.0)  # energy outside F's column space: a residual at any w
    alpha, beta = 1.0, 1.0
    for _ in range(MAX_STEPS):
        t = alpha / beta
        gamma = float((sigma / (sigma + t)).sum())
        m2 = float((sigma * x2 / (sigma + t) ** 2).sum())  # m^T m
        res2 = float((x2 * (t / (sigma + t)) ** 2).sum()) + rest  # ||y - F m||^2
        # The tiny floors keep a perfectly fitted or all-zero column finite (the authors add 1e-5).
        alpha = gamma / max(m2, 1e-12)
        beta = (n - gamma) / max(res2, 1e-12)
        if abs(alpha / beta - t) / t <= TOLERANCE:
            break
    t = alpha / beta
    m2 = float((sigma * x2 / (sigma + t) ** 2).sum())
    res2 = float((x2 * (t / (sigma + t)) ** 2).sum()) + rest
    logdet = float(np.log(alpha + beta * sigma).sum()) + (d - len(sigma)) * np.log(alpha)
    evidence = (d / 2 * np.log(alpha) + n / 2 * np.log(beta) - logdet / 2 - beta / 2 * res2 - alpha / 2 * m2
                - n / 2 * np.log(2 * np.pi))
    return float(evidence / n), float(alpha), float(beta)


def logme(features, targets) -> float:
    """LogME of `features` for `targets` (class ids or a 0/1 label matrix): the mean over classes of the maximum
    log evidence per row (You et al. 2021; see the module docstring). Higher predicts better transfer."""
    f, y = _check(features, targets)
    n, d = f.shape
    u, s, _ = np.linalg.svd(f, full_matrices=False)
    sigma = s ** 2
    columns = _columns(y)
    return float(np.mean([_max_evidence(u, sigma, n, d, columns[:, k])[0] for k in range(columns.shape[1])]))


def h_score(features, targets, *, shrinkage: float | None = None) -> float:
    """H-score tr(cov(f)^-1 (1 - a) cov(E[f|y])) with cov(f) shrunk by a (Ledoit-Wolf's a unless `shrinkage` is given;
    0 is the plain H-score of Bao et al. 2019). Multi-label targets: the mean of each label's score."""
    from sklearn.covariance import LedoitWolf, shrunk_covariance

    f, y = _check(features, targets)
    if y.ndim == 2:
        return float(np.mean([h_score(f, y[:, j].astype(np.int64), shrinkage=shrinkage) for j in range(y.shape[1])]))
    f = f - f.mean(axis=0)
    if shrinkage is None:
        estimate = LedoitWolf(assume_centered=True).fit(f)
        cov_f, a = estimate.covariance_, float(estimate.shrinkage_)
    else:
        if not 0.0 <= shrinkage <= 1.0:
            raise ValueError(f"shrinkage must be in [0, 1], got {shrinkage}")
        a = float(shrinkage)
        cov_f = shrunk_covariance(f.T @ f / len(f), shrinkage=a)
    classes, index = np.unique(y.astype(np.int64), return_inverse=True)
    means = np.stack([f[index == k].mean(axis=0) for k in range(len(classes))])
    g = means[index]  # each row's class-conditional mean, E[f | y]
    cov_g = (1.0 - a) * (g.T @ g) / len(g)  # ML covariances (divided by N) on both sides, as Ledoit-Wolf's
    return float(np.trace(np.linalg.pinv(cov_f, hermitian=True) @ cov_g))

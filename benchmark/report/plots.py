"""The report's figures (matplotlib, Agg: no display needed); each function writes one PNG and returns its path.

    medtl report benchmark/suites/smoke.yaml     # writes these under reports/<suite>/
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # servers and CI have no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

DPI = 110


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def leaderboard_bars(board: pd.DataFrame, floors: pd.DataFrame, path: Path, metric: str = "mcc") -> Path:
    """Mean MCC per row with its 95 % CI; chance floors as dashed lines."""
    labels = board["row"].tolist()
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(labels) + 1.5))
    y = np.arange(len(labels))[::-1]
    mean = board[f"{metric}_mean"].to_numpy()
    err = np.vstack([mean - board[f"{metric}_low"].fillna(board[f"{metric}_mean"]).to_numpy(),
                     board[f"{metric}_high"].fillna(board[f"{metric}_mean"]).to_numpy() - mean])
    ax.barh(y, mean, xerr=err, color="#4C72B0", capsize=3)
    ax.set_yticks(y, labels=labels, fontsize=8)
    for (_, floor), style in zip(floors.iterrows(), ("--", ":")):
        ax.axvline(floor[f"{metric}_mean"], color="grey", linestyle=style, label=floor["row"])
    if len(floors):
        ax.legend(fontsize=7, loc="lower right")
    ax.set_xlabel(f"{metric.upper()} (mean, 95 % CI over folds x seeds)")
    return _save(fig, path)


def confusion_matrix(matrix: np.ndarray, class_names: list[str], path: Path, title: str) -> Path:
    from tracking.artifacts import plot_confusion_matrix

    plot_confusion_matrix(matrix, class_names, path, title)
    return path


def roc_curves(curves: dict[str, tuple[np.ndarray, np.ndarray, float]], path: Path, title: str) -> Path:
    """One curve per row: label -> (fpr, tpr, auc)."""
    fig, ax = plt.subplots(figsize=(5, 4.5))
    for label, (fpr, tpr, auc) in curves.items():
        ax.plot(fpr, tpr, label=f"{label} (AUC {auc:.3f})")
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=0.8)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    return _save(fig, path)


def data_efficiency(board: pd.DataFrame, path: Path) -> Path:
    """MCC against the training fraction per source x strategy, one panel per backbone, CI bands."""
    backbones = list(dict.fromkeys(board["backbone"]))
    fig, axes = plt.subplots(1, len(backbones), figsize=(5 * len(backbones), 4), squeeze=False)
    for ax, backbone in zip(axes[0], backbones):
        part = board[board["backbone"] == backbone]
        for (source, strategy), line in part.groupby(["source", "strategy"], sort=False):
            line = line.sort_values("fraction")
            ax.plot(line["fraction"], line["mcc_mean"], marker="o", label=f"{source}/{strategy}")
            ax.fill_between(line["fraction"], line["mcc_low"], line["mcc_high"], alpha=0.2)
        ax.set_xscale("log")  # fractions are usually spaced by factors (0.1, 0.25, 0.5, 1)
        fractions = sorted(set(part["fraction"]))
        ax.set_xticks(fractions, labels=[f"{f:g}" for f in fractions])
        ax.minorticks_off()
        ax.set_xlabel("fraction of the training set")
        ax.set_ylabel("MCC (mean, 95 % CI)")
        ax.set_title(backbone, fontsize=9)
        ax.legend(fontsize=7)
    return _save(fig, path)


def pareto_front(cost: np.ndarray, quality: np.ndarray) -> np.ndarray:
    """Indices of the rows no other row beats on both lower cost and higher quality, by increasing cost."""
    order = np.lexsort((-quality, cost))
    front, best = [], -np.inf
    for i in order:
        if quality[i] > best:
            front.append(i)
            best = quality[i]
    return np.array(front, dtype=int)


def quality_vs_cost(board: pd.DataFrame, cost_column: str, cost_label: str, path: Path) -> Path:
    """MCC against an inference cost, the Pareto front marked."""
    data = board.dropna(subset=[cost_column, "mcc_mean"])
    fig, ax = plt.subplots(figsize=(6, 4.5))
    cost, quality = data[cost_column].to_numpy(float), data["mcc_mean"].to_numpy(float)
    ax.errorbar(cost, quality, yerr=[quality - data["mcc_low"].fillna(data["mcc_mean"]), data["mcc_high"].fillna(data["mcc_mean"]) - quality],
                fmt="o", color="#4C72B0", ecolor="#999999", capsize=2)
    for x, y, label in zip(cost, quality, data["row"]):
        ax.annotate(label, (x, y), fontsize=6, xytext=(3, 3), textcoords="offset points")
    if len(data):
        front = pareto_front(cost, quality)
        ax.step(cost[front], quality[front], where="post", color="#C44E52", label="Pareto front")
        ax.scatter(cost[front], quality[front], s=80, facecolors="none", edgecolors="#C44E52")
        ax.legend(fontsize=7)
    if len(data) and cost.min() > 0 and cost.max() / cost.min() > 20:
        ax.set_xscale("log")
    ax.set_xlabel(cost_label)
    ax.set_ylabel("MCC (mean, 95 % CI)")
    return _save(fig, path)


def rank_diagram(ranks: pd.Series, nemenyi: pd.DataFrame, cd: float, path: Path, title: str) -> Path:
    """Critical-difference diagram (scikit-posthocs): average ranks, bars join rows Nemenyi cannot tell apart."""
    import scikit_posthocs as sp

    fig, ax = plt.subplots(figsize=(7, 0.4 * len(ranks) + 1.8))
    sp.critical_difference_diagram(ranks, nemenyi, ax=ax)
    ax.set_title(f"{title}  (Nemenyi CD = {cd:.2f} at alpha 0.05)", fontsize=9)
    return _save(fig, path)

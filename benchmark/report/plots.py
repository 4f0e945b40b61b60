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
MCC_AXIS = (-1.0, 1.0)  # MCC's whole range: a bar near 1 is read against where chance (0) and the worst (-1) are


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=DPI, bbox_inches="tight")  # labels and legends outside the axes are kept, not clipped
    plt.close(fig)
    return path


def _si_formatter():
    """Tick labels in SI units (7.4 M, 300 M), never an offset ("+2.9963e8") or scientific notation."""
    from matplotlib.ticker import FuncFormatter

    from benchmark.report.render import si

    return FuncFormatter(lambda value, _: si(value) if value else "0")


def leaderboard_bars(board: pd.DataFrame, floors: pd.DataFrame, path: Path, metric: str = "mcc") -> Path:
    """Mean MCC per row with its 95 % CI; chance floors as dashed lines."""
    marked = board["degenerate"].eq(True) if "degenerate" in board else pd.Series(False, index=board.index)
    labels = [label + ("\n(degenerate: predicts one class)" if degenerate else "") for label, degenerate in zip(board["row"], marked)]
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(labels) + 1.5))
    y = np.arange(len(labels))[::-1]
    mean = board[f"{metric}_mean"].to_numpy()
    err = np.vstack([mean - board[f"{metric}_low"].fillna(board[f"{metric}_mean"]).to_numpy(),
                     board[f"{metric}_high"].fillna(board[f"{metric}_mean"]).to_numpy() - mean])
    ax.barh(y, mean, xerr=err, color="#4C72B0", capsize=3)
    ax.set_xlim(*(MCC_AXIS if metric == "mcc" else (0.0, 1.0)))
    ax.axvline(0, color="black", linewidth=0.6)
    ax.set_yticks(y, labels=labels, fontsize=8)
    for (_, floor), style in zip(floors.iterrows(), ("--", ":")):
        ax.axvline(floor[f"{metric}_mean"], color="grey", linestyle=style, label=floor["row"])
    if len(floors):
        ax.legend(fontsize=7, loc="lower left")  # the bars end on the right; chance and below is empty space
    ax.set_xlabel(f"{metric.upper()} (mean, 95 % CI over folds x seeds)")
    return _save(fig, path)


def confusion_matrix(matrix: np.ndarray, class_names: list[str], path: Path, title: str) -> Path:
    from tracking.artifacts import plot_confusion_matrix

    plot_confusion_matrix(matrix, class_names, path, title)
    return path


def roc_curves(curves: dict[str, tuple[np.ndarray, np.ndarray, float]], path: Path, title: str, auc_name: str = "AUC") -> Path:
    """One curve per row: label -> (fpr, tpr, auc); `auc_name` says which AUC the legend gives (the legend's title)."""
    fig, ax = plt.subplots(figsize=(5, 4.5))
    for label, (fpr, tpr, auc) in curves.items():
        ax.plot(fpr, tpr, label=f"{label} ({auc:.3f})")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=0.8)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="lower right", title=auc_name, title_fontsize=7)
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
        ax.set_ylim(*MCC_AXIS)
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


def _nearby(cost: np.ndarray, quality: np.ndarray) -> dict[tuple[float, float], list[str]]:
    """Point numbers (1-based) grouped by position: within 2 % of the cost span and 0.04 MCC they share one label."""
    span = (cost.max() - cost.min()) or abs(cost.max()) or 1.0
    groups: dict[tuple[float, float], list[str]] = {}
    for i, (x, y) in enumerate(zip(cost, quality)):
        home = next(((gx, gy) for gx, gy in groups if abs(gx - x) <= 0.02 * span and abs(gy - y) <= 0.04), (x, y))
        groups.setdefault(home, []).append(str(i + 1))
    return groups


def quality_vs_cost(board: pd.DataFrame, cost_column: str, cost_label: str, path: Path) -> Path:
    """MCC against an inference cost, the Pareto front marked. Points are numbered and named in a legend below the axes
    (labels beside close points overlap and run out of the box); the cost axis starts at 0 on a linear scale, so rows
    that cost nearly the same look so (no zoom onto 7.40-7.49e7), and is log-scaled only across a 20-fold spread."""
    data = board.dropna(subset=[cost_column, "mcc_mean"]).reset_index(drop=True)
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    cost, quality = data[cost_column].to_numpy(float), data["mcc_mean"].to_numpy(float)
    ax.errorbar(cost, quality, yerr=[quality - data["mcc_low"].fillna(data["mcc_mean"]), data["mcc_high"].fillna(data["mcc_mean"]) - quality],
                fmt="o", color="#4C72B0", ecolor="#999999", capsize=2)
    for (x, y), numbers in _nearby(cost, quality).items():  # one label "1, 2" for points that sit on each other
        ax.annotate(", ".join(numbers), (x, y), fontsize=7, xytext=(5, 3), textcoords="offset points")
    handles = []
    if len(data):
        front = pareto_front(cost, quality)
        handles += ax.step(cost[front], quality[front], where="post", color="#C44E52", label="Pareto front")
        ax.scatter(cost[front], quality[front], s=80, facecolors="none", edgecolors="#C44E52")
    log = bool(len(data) and cost.min() > 0 and cost.max() / cost.min() > 20)
    if log:
        ax.set_xscale("log")
    else:
        ax.set_xlim(0, cost.max() * 1.1 if len(data) and cost.max() > 0 else 1)
    ax.xaxis.set_major_formatter(_si_formatter())
    ax.set_ylim(*MCC_AXIS)
    ax.axhline(0, color="black", linewidth=0.6)
    ax.set_xlabel(cost_label)
    ax.set_ylabel("MCC (mean, 95 % CI)")
    names = [plt.Line2D([], [], linestyle="none", label=f"{i + 1}  {label}") for i, label in enumerate(data["row"])]
    ax.legend(handles=handles + names, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=2 if len(names) > 6 else 1,
              frameon=False, handlelength=1 if handles else 0)
    return _save(fig, path)


def rank_diagram(ranks: pd.Series, nemenyi: pd.DataFrame, cd: float, path: Path, title: str) -> Path:
    """Critical-difference diagram (scikit-posthocs): average ranks, bars join rows Nemenyi cannot tell apart."""
    import scikit_posthocs as sp

    fig, ax = plt.subplots(figsize=(7, 0.4 * len(ranks) + 1.8))
    sp.critical_difference_diagram(ranks, nemenyi, ax=ax)
    ax.set_title(f"{title}  (Nemenyi CD = {cd:.2f} at alpha 0.05)", fontsize=9)
    return _save(fig, path)


def reliability_diagram(before: pd.DataFrame, after: pd.DataFrame, path: Path, title: str) -> Path:
    """Accuracy against mean confidence per bin (tasks.training.calibration.reliability_table), before and after
    temperature scaling; the diagonal is perfect calibration. Both axes span [0, 1]."""
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=0.8, label="perfect calibration")
    for table, label, style in ((before, "as tested", "o-"), (after, "after temperature scaling", "s-")):
        ax.plot(table["confidence"], table["accuracy"], style, markersize=4, label=label)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_aspect("equal")
    ax.set_xlabel("confidence (mean top-class probability in bin)")
    ax.set_ylabel("accuracy in bin")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="upper left")
    return _save(fig, path)

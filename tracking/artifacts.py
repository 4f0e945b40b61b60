"""Artifacts: confusion matrices (CSV + PNG with class names), JSON, tables and text."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from mlflow.tracking import MlflowClient


def _log_file(client: MlflowClient, run_id: str, path: Path, artifact_path: str | None) -> None:
    client.log_artifact(run_id, str(path), artifact_path=artifact_path)


def log_text(client: MlflowClient, run_id: str, text: str, name: str, artifact_path: str | None = None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_text(text)
        _log_file(client, run_id, path, artifact_path)


def log_json(client: MlflowClient, run_id: str, obj, name: str, artifact_path: str | None = None) -> None:
    log_text(client, run_id, json.dumps(obj, indent=2, sort_keys=True, default=str), name, artifact_path)


def log_dataframe(client: MlflowClient, run_id: str, frame: pd.DataFrame, name: str, artifact_path: str | None = None, index: bool = False) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        frame.to_csv(path, index=index)
        _log_file(client, run_id, path, artifact_path)


def confusion_matrix_frame(matrix: np.ndarray, class_names: Sequence[str]) -> pd.DataFrame:
    """Rows are true classes, columns predicted classes, labelled by name."""
    names = list(class_names)
    return pd.DataFrame(
        np.asarray(matrix, dtype=np.int64),
        index=pd.Index([f"true:{n}" for n in names], name="class"),
        columns=[f"pred:{n}" for n in names],
    )


def plot_confusion_matrix(matrix: np.ndarray, class_names: Sequence[str], path: Path, title: str = "") -> None:
    """A PNG of `matrix` (rows true, columns predicted, by class name) with every non-zero count written in its cell.

    Every tested cell draws one (and one per external set), so it is kept cheap: zero counts stay blank
    (the axis label says so; a 16-class matrix is mostly zeros and its numbers were most of the drawing
    time), the numbers take no part in the margin layout, and no pyplot state is touched (a `Figure` of
    its own, drawn by Agg: no display on servers and CI).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    matrix = np.asarray(matrix)
    n = len(class_names)
    fig = Figure(figsize=(max(4, 0.6 * n + 2), max(3.5, 0.55 * n + 1.5)))
    FigureCanvasAgg(fig)  # without a canvas of its own, tight_layout would render the whole figure once more to measure it
    ax = fig.subplots()
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(n), labels=class_names, rotation=45, ha="right")
    ax.set_yticks(range(n), labels=class_names)
    ax.set_xlabel("predicted (blank: 0)")
    ax.set_ylabel("true")
    if title:
        ax.set_title(title, fontsize=9)
    threshold = matrix.max() / 2 if matrix.size else 0
    for i, j in zip(*np.nonzero(matrix)):
        count = ax.text(j, i, int(matrix[i, j]), ha="center", va="center", fontsize=8,
                        color="white" if matrix[i, j] > threshold else "black")
        count.set_in_layout(False)  # inside its cell: only the tick labels and title shape the margins
    fig.tight_layout()
    fig.set_layout_engine("none")  # laid out once: savefig would otherwise draw the whole figure an extra time
    fig.savefig(path, dpi=110)


def log_confusion_matrix(client: MlflowClient, run_id: str, matrix: np.ndarray, class_names: Sequence[str], *, prefix: str = "test", title: str = "") -> None:
    """Log `<prefix>/confusion_matrix.csv` and `.png`."""
    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / "confusion_matrix.csv"
        confusion_matrix_frame(matrix, class_names).to_csv(csv)
        png = Path(tmp) / "confusion_matrix.png"
        plot_confusion_matrix(matrix, class_names, png, title)
        _log_file(client, run_id, csv, prefix)
        _log_file(client, run_id, png, prefix)

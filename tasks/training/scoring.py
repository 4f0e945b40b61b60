"""Score a predictions table with the cells' own metric code (`medtl score`, external submissions).

    >>> from tasks.training.scoring import score_table
    >>> score_table(pd.read_csv("test/predictions.csv"))["micro"]["mcc"]

A table is the cells' `test/predictions.csv` (`tasks.training.evaluation.predictions_table`:
`target` and `predicted` class ids, one `p:<class>` probability column per class in class-id
order), or any table with `target` and `predicted` columns holding class names or integer ids;
`p:<class>` columns are optional and give AUC. The macro and micro rows are those the cells log
(`tasks.training.metrics`: `test/*` and `test/micro/*`), computed on the `predicted` column (not on
the argmax of the probabilities, which a submission need not follow).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from torchmetrics.classification import BinaryAUROC, MulticlassAUROC

from tasks.data.index import TaskMeta
from tasks.training.metrics import ONE_VS_REST, POSITIVE_METRICS, classification_metrics, positive_index

PROBABILITY_PREFIX = "p:"  # a probability column is named p:<class name> (predictions_table writes them so)
REQUIRED = ("target", "predicted")


class ScoringError(ValueError):
    """A predictions table that cannot be scored; the message says what, where, and how to fix it."""


def _rows(mask: np.ndarray) -> str:
    positions = np.flatnonzero(mask) + 1
    shown = ", ".join(str(int(p)) for p in positions[:5])
    more = " ..." if len(positions) > 5 else ""
    return f"data row{'s' if len(positions) > 1 else ''} {shown}{more} (1-based, header not counted)"


def _is_id(value) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return False
    if isinstance(value, (int, np.integer)):
        return True
    if isinstance(value, (float, np.floating)):
        return float(value).is_integer()
    return isinstance(value, str) and value.strip().lstrip("-").isdigit()


def _check_table(frame: pd.DataFrame) -> None:
    if not isinstance(frame, pd.DataFrame):
        raise ScoringError(f"Expected a pandas DataFrame of predictions, got {type(frame).__name__}.")
    columns = set(frame.columns)
    if "targets" in columns and "target" not in columns:
        raise ScoringError("This is a multi-label predictions table (a 'targets' column of label lists); only "
                           "single-label tables are scored. Fix: score multi-label cells from their logged "
                           "test/* metrics.")
    missing = [c for c in REQUIRED if c not in columns]
    if missing:
        raise ScoringError(f"The predictions table lacks column(s) {', '.join(missing)} (it has: "
                           f"{', '.join(map(str, frame.columns)) or 'none'}). Fix: name the true class column 'target' "
                           "and the predicted class column 'predicted' (class names or ids 0..K-1).")
    if len(frame) == 0:
        raise ScoringError("The predictions table has no rows. Fix: score a table with at least one prediction.")
    for column in REQUIRED:
        empty = frame[column].isna().to_numpy()
        if empty.any():
            raise ScoringError(f"Column '{column}' is empty (NaN) at {_rows(empty)}. Fix: give every row a class.")


def _column_kind(values: pd.Series, column: str, names: Sequence[str] | None) -> str:
    """'ids' or 'names'; a column holding both is refused (a name and an id can denote the same class)."""
    known = set(names or ())
    is_name = np.array([str(v) in known or not _is_id(v) for v in values])
    if is_name.all():
        return "names"
    if not is_name.any():
        return "ids"
    raise ScoringError(f"Column '{column}' mixes class names and integer ids (a name at {_rows(is_name)}; an id at "
                       f"{_rows(~is_name)}). Fix: use names throughout or ids 0..K-1 throughout.")


def _declared_names(frame: pd.DataFrame, class_names: Sequence[str] | None) -> list[str] | None:
    """The class list in id order, as given or as the `p:<class>` columns declare it; None when neither."""
    from_columns = [c[len(PROBABILITY_PREFIX):] for c in map(str, frame.columns) if c.startswith(PROBABILITY_PREFIX)]
    if class_names is None:
        return from_columns or None  # the cells' tables: p:<class> columns in class-id order
    names = [str(n) for n in class_names]
    if not names or len(set(names)) != len(names):
        raise ScoringError(f"Class names must be distinct and at least one: got {names}. Fix: give each class once, "
                           "in id order.")
    if from_columns and set(from_columns) != set(names):
        raise ScoringError(f"Probability columns name classes {', '.join(from_columns)} but the class names given are "
                           f"{', '.join(names)}. Fix: give the same classes (or leave the class names out).")
    return names


def _found_names(frame: pd.DataFrame, kind: str) -> list[str]:
    """Without a class list: the names in the table (sorted), or ids 0..max."""
    values = pd.concat([frame["target"], frame["predicted"]])
    if kind == "names":
        return sorted({str(v) for v in values})
    return [str(i) for i in range(max(0, *(int(float(v)) for v in values)) + 1)]


def _class_ids(values: pd.Series, column: str, names: list[str], kind: str) -> np.ndarray:
    if kind == "names":
        text = values.astype(str).to_numpy()
        unknown = ~np.isin(text, names)
        if unknown.any():
            shown = ", ".join(sorted({repr(v) for v in text[unknown]})[:5])
            raise ScoringError(f"Column '{column}' holds class name(s) {shown} at {_rows(unknown)} that are not "
                               f"among the classes {', '.join(names)}. Fix: correct the names, or give the full class list.")
        lookup = {name: i for i, name in enumerate(names)}
        return np.array([lookup[v] for v in text], dtype=np.int64)
    ids = np.array([int(float(v)) for v in values], dtype=np.int64)
    outside = (ids < 0) | (ids >= len(names))
    if outside.any():
        raise ScoringError(f"Column '{column}' holds class id(s) outside 0..{len(names) - 1} at {_rows(outside)} "
                           f"({len(names)} classes: {', '.join(names)}). Fix: use ids 0..{len(names) - 1}, or give "
                           "the full class list.")
    return ids


def _probabilities(frame: pd.DataFrame, names: list[str]) -> np.ndarray | None:
    columns = [f"{PROBABILITY_PREFIX}{n}" for n in names]
    present = [c for c in columns if c in frame.columns]
    if not present:
        return None
    if len(present) != len(columns):
        missing = [c for c in columns if c not in frame.columns]
        raise ScoringError(f"Probability columns are incomplete: {', '.join(missing)} missing. Fix: give one "
                           f"'{PROBABILITY_PREFIX}<class>' column per class, or none (no AUC then).")
    try:
        probs = frame[columns].astype(np.float64).to_numpy()
    except (TypeError, ValueError) as exc:
        raise ScoringError(f"Probability columns hold non-numbers ({exc}). Fix: write probabilities as "
                           "numbers.") from exc
    empty = np.isnan(probs).any(axis=1)
    if empty.any():
        raise ScoringError(f"Probability columns are empty (NaN) at {_rows(empty)}. Fix: fill them, or drop all "
                           f"'{PROBABILITY_PREFIX}<class>' columns (no AUC then).")
    return probs


def score_table(df: pd.DataFrame, class_names: Sequence[str] | None = None,
                positive_class: str | int | None = None) -> dict[str, dict[str, float]]:
    """Macro and micro (Medico 2018) rows of a single-label predictions table, as cells score.

    `class_names` (in id order) are taken from the `p:<class>` columns when not given, else from the
    table's names (sorted) or ids (0..max). `positive_class` (name or id) adds that class's row.
    Returns {"macro": {mcc, f1, rec, prec, spec, acc[, auc]}, "micro": {...}[, "positive": {rec, prec,
    f1[, auc]}]}, "auc" where probabilities are given. "macro"'s mcc is the multiclass R_K the cells log
    as `mcc` (not a mean of per-class MCCs); "micro" pools one-vs-rest counts over classes, and its
    auc is scikit-learn's average="micro" (every (image, class) score against its 0/1 truth).
    Raises ScoringError on a table that cannot be scored.
    """
    _check_table(df)
    declared = _declared_names(df, class_names)
    kinds = {c: _column_kind(df[c], c, declared) for c in REQUIRED}
    if declared is None and kinds["target"] != kinds["predicted"]:
        raise ScoringError(f"Column 'target' holds class {kinds['target']} and 'predicted' class {kinds['predicted']}. "
                           "Fix: use names in both or ids in both (or give the class list).")
    names = declared or _found_names(df, kinds["target"])
    target, predicted = (_class_ids(df[c], c, names, kinds[c]) for c in REQUIRED)
    probs = _probabilities(df, names)
    meta = TaskMeta("the predictions table", tuple(names), "binary" if len(names) == 2 else "multiclass")
    try:
        positive = positive_index(meta, positive_class)
    except ValueError as exc:
        raise ScoringError(str(exc)) from None
    metrics = classification_metrics(meta, positive_class=positive, auc=False)
    metrics.update(torch.from_numpy(predicted), torch.from_numpy(target))
    # 6 decimals: the metrics are float32, whose last digits are noise in a printed or JSON score.
    values = {k: round(float(v), 6) for k, v in metrics.compute().items()}
    result = {"macro": {k: values[k] for k in ONE_VS_REST}, "micro": {k: values[f"micro/{k}"] for k in ONE_VS_REST}}
    if positive is not None:
        result["positive"] = {k: values[f"pos/{k}"] for k in POSITIVE_METRICS}
    if probs is not None:
        p, y = torch.from_numpy(probs).float(), torch.from_numpy(target)
        result["macro"]["auc"] = round(float(MulticlassAUROC(num_classes=len(names), average="macro")(p, y)), 6)
        hot = torch.nn.functional.one_hot(y, len(names))
        result["micro"]["auc"] = round(float(BinaryAUROC()(p.flatten(), hot.flatten())), 6)
        if positive is not None:
            result["positive"]["auc"] = round(float(BinaryAUROC()(p[:, positive], (y == positive).long())), 6)
    return result

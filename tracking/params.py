"""Flatten nested specs into MLflow params (`hparams.lr`), within MLflow's value length limit."""

from __future__ import annotations

import json
from collections.abc import Mapping

MAX_PARAM_LENGTH = 6000  # MLflow's limit for a param value


def flatten(obj: Mapping, prefix: str = "") -> dict[str, str]:
    """{"a": {"b": 1}} -> {"a.b": "1"}; lists become JSON so they stay readable in the UI."""
    flat: dict[str, str] = {}
    for key, value in obj.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, prefix=f"{name}."))
        else:
            text = json.dumps(value) if isinstance(value, (list, tuple)) else str(value)
            flat[name] = text[:MAX_PARAM_LENGTH]
    return flat

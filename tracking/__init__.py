"""MLflow tracking: the embedded store, run naming and lookup, params, tags and artifacts.

Default store: `sqlite:///mlruns.db` with artifacts in `./mlartifacts` under the working
directory; `MLFLOW_TRACKING_URI` overrides it. Browse with `make ui`.
Imports no other project package.

The names below are loaded on first use (PEP 562), so `tracking.settings`, which the data layer
reads environment variables through, does not pay for importing MLflow (seconds).
"""

from importlib import import_module

_HOMES = {
    "log_confusion_matrix": "artifacts", "log_dataframe": "artifacts", "log_json": "artifacts", "log_text": "artifacts",
    "environment_tags": "environment",
    "CellLogger": "logger",
    "flatten": "params",
    "CellRun": "runs", "finished_runs_by_hash": "runs", "runs_frame": "runs", "start_run": "runs",
    "DEFAULT_TRACKING_URI": "store", "client": "store", "ensure_experiment": "store", "tracking_uri": "store",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module 'tracking' has no attribute {name!r}")
    value = getattr(import_module(f"tracking.{_HOMES[name]}"), name)
    globals()[name] = value  # later look-ups skip this function
    return value

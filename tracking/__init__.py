"""MLflow tracking: the embedded store, run naming and lookup, params, tags and artifacts.

Default store: `sqlite:///mlruns.db` with artifacts in `./mlartifacts` under the working
directory; `MLFLOW_TRACKING_URI` overrides it. Browse with `make ui`.
Imports no other project package.
"""

from tracking.artifacts import log_confusion_matrix, log_dataframe, log_json, log_text
from tracking.environment import environment_tags
from tracking.logger import CellLogger
from tracking.params import flatten
from tracking.runs import CellRun, finished_runs_by_hash, runs_frame, start_run
from tracking.store import DEFAULT_TRACKING_URI, client, ensure_experiment, tracking_uri

__all__ = [
    "DEFAULT_TRACKING_URI",
    "CellLogger",
    "CellRun",
    "client",
    "environment_tags",
    "ensure_experiment",
    "finished_runs_by_hash",
    "flatten",
    "log_confusion_matrix",
    "log_dataframe",
    "log_json",
    "log_text",
    "runs_frame",
    "start_run",
    "tracking_uri",
]

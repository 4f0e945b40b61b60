"""Where runs go: an embedded SQLite store by default, any MLflow tracking URI by choice."""

from __future__ import annotations

import json
from pathlib import Path

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from tracking import settings
from tracking.naming import TRIAL_STATE_TAG, TUNING_SUFFIX

DEFAULT_TRACKING_URI = "sqlite:///mlruns.db"
ARTIFACT_DIR = "mlartifacts"
# MLflow 3's UI opens an experiment on its GenAI (traces) view unless this tag says it holds
# model training; the value is the UI's ExperimentKind.CUSTOM_MODEL_DEVELOPMENT.
EXPERIMENT_KIND_TAG, EXPERIMENT_KIND = "mlflow.experimentKind", "custom_model_development"
# MLflow 3.5+ reads the experiment kind from a global "workflow type" switch instead (GenAI unless the
# URL says otherwise, mlflow/server/js: `workflowType` search parameter), so every link medtl prints carries it.
UI_BASE_URL = "http://127.0.0.1:5000"  # where `make ui` / `mlflow ui` serve
UI_WORKFLOW = "workflowType=machine_learning"
# The runs table shows no metric column until a user picks one; a "shared view" (an experiment tag the
# UI reads when the link names its key) opens it with the columns a researcher compares, sorted by MCC.
UI_VIEW_KEY = "medtl"
UI_VIEW_TAG = f"mlflow.sharedViewState.{UI_VIEW_KEY}"
CELL_COLUMNS = ("test/mcc", "test/auc", "test/f1", "test/fps")  # metrics of a suite's cells
TRIAL_COLUMNS = ("objective", "val/mcc")  # metrics of a study's trials (objective: the best per-epoch val/mcc)


def ui_view(name: str) -> str:
    """The shared view (JSON) of experiment `name`: its metric columns, best first."""
    trials = name.endswith(TUNING_SUFFIX)
    metrics = TRIAL_COLUMNS if trials else CELL_COLUMNS
    columns = [f"metrics.`{m}`" for m in metrics] + ([f"tags.`{TRIAL_STATE_TAG}`"] if trials else [])
    return json.dumps({"orderByKey": f"metrics.`{metrics[0]}`", "orderByAsc": False, "searchFilter": "",
                       "selectedColumns": columns, "runsExpanded": {}})


def tracking_uri(uri: str | None = None) -> str:
    """Explicit `uri`, else `$MLFLOW_TRACKING_URI`, else the embedded SQLite file in the cwd."""
    return uri or settings.read("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def ui_runs_url(experiment_id: str, base_url: str = UI_BASE_URL) -> str:
    """The MLflow UI's runs table of an experiment (not its GenAI traces overview)."""
    return f"{base_url.rstrip('/')}/#/experiments/{experiment_id}/runs?{UI_WORKFLOW}&viewStateShareKey={UI_VIEW_KEY}"


def ui_home_url(base_url: str = UI_BASE_URL) -> str:
    """The MLflow UI's experiment list in its machine-learning view."""
    return f"{base_url.rstrip('/')}/#/experiments?{UI_WORKFLOW}"


def ui_hint(uri: str, experiment_id: str) -> str:
    """One line: how to open an experiment's runs table (the server command for a local store, then the link)."""
    serve = f"mlflow ui --backend-store-uri {uri} --port 5000, then " if _is_local_store(uri) else ""
    base = UI_BASE_URL if _is_local_store(uri) else uri
    return f"{serve}open {ui_runs_url(experiment_id, base)}"


def client(uri: str | None = None) -> MlflowClient:
    return MlflowClient(tracking_uri=tracking_uri(uri))


def open_store(uri: str | None = None, *, create: bool = True) -> MlflowClient:
    """A client for a store that was checked first, so a bad store fails in seconds with the URI and the fix.

    `create=False` (reports, lookups): an absent embedded store is an error, never created empty.
    See `tracking.preflight` for what is checked.
    """
    from tracking.preflight import check_store, creating_store

    uri = tracking_uri(uri)
    check_store(uri, create=create)
    with creating_store(uri, create=create):
        mlflow_client = MlflowClient(tracking_uri=uri)
        try:
            mlflow_client.search_experiments(max_results=1)  # opens (and on first use creates) the store
        except Exception as exc:  # noqa: BLE001 - SQLAlchemy, REST and OS errors all mean: unusable store
            from tracking.preflight import StoreError

            raise StoreError(f"Tracking store {uri} cannot be opened ({type(exc).__name__}: {str(exc)[:300]}). Fix: "
                             "check the URI (MLFLOW_TRACKING_URI / --tracking-uri) and that the store is an MLflow "
                             "store you may write to.") from exc
    return mlflow_client


def _is_local_store(uri: str) -> bool:
    return uri.startswith(("sqlite:", "file:")) or "://" not in uri


def ensure_experiment(mlflow_client: MlflowClient, name: str) -> str:
    """Experiment id for `name`, created on first use.

    For a local store the artifacts go to `./mlartifacts` beside `mlruns.db` (MLflow would
    otherwise pick a folder relative to wherever the UI is started); a tracking server keeps its
    own artifact root.
    """
    experiment = mlflow_client.get_experiment_by_name(name)
    tags = {EXPERIMENT_KIND_TAG: EXPERIMENT_KIND, UI_VIEW_TAG: ui_view(name)}
    if experiment is not None:
        for key, value in tags.items():
            if experiment.tags.get(key) != value:  # stores made before the tag existed (or with an older view)
                mlflow_client.set_experiment_tag(experiment.experiment_id, key, value)
        return experiment.experiment_id
    location = None
    if _is_local_store(mlflow_client.tracking_uri):
        location = (Path.cwd() / ARTIFACT_DIR).resolve().as_uri()
    try:
        return mlflow_client.create_experiment(name, artifact_location=location, tags=tags)
    except MlflowException:
        # Two suites starting at once on a fresh store: the other one created it first.
        experiment = mlflow_client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return experiment.experiment_id

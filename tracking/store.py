"""Where runs go: an embedded SQLite store by default, any MLflow tracking URI by choice."""

from __future__ import annotations

from pathlib import Path

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from tracking import settings

DEFAULT_TRACKING_URI = "sqlite:///mlruns.db"
ARTIFACT_DIR = "mlartifacts"
# MLflow 3's UI opens an experiment on its GenAI (traces) view unless this tag says it holds
# model training; the value is the UI's ExperimentKind.CUSTOM_MODEL_DEVELOPMENT.
EXPERIMENT_KIND_TAG, EXPERIMENT_KIND = "mlflow.experimentKind", "custom_model_development"


def tracking_uri(uri: str | None = None) -> str:
    """Explicit `uri`, else `$MLFLOW_TRACKING_URI`, else the embedded SQLite file in the cwd."""
    return uri or settings.read("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


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
    if experiment is not None:
        if EXPERIMENT_KIND_TAG not in experiment.tags:  # stores made before the tag existed
            mlflow_client.set_experiment_tag(experiment.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
        return experiment.experiment_id
    location = None
    if _is_local_store(mlflow_client.tracking_uri):
        location = (Path.cwd() / ARTIFACT_DIR).resolve().as_uri()
    try:
        return mlflow_client.create_experiment(name, artifact_location=location, tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND})
    except MlflowException:
        # Two suites starting at once on a fresh store: the other one created it first.
        experiment = mlflow_client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return experiment.experiment_id

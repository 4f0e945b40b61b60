"""Where runs go: an embedded SQLite store by default, any MLflow tracking URI by choice."""

from __future__ import annotations

import os
from pathlib import Path

from mlflow.tracking import MlflowClient

DEFAULT_TRACKING_URI = "sqlite:///mlruns.db"
ARTIFACT_DIR = "mlartifacts"
# MLflow 3's UI opens an experiment on its GenAI (traces) view unless this tag says it holds
# model training; the value is the UI's ExperimentKind.CUSTOM_MODEL_DEVELOPMENT.
EXPERIMENT_KIND_TAG, EXPERIMENT_KIND = "mlflow.experimentKind", "custom_model_development"


def tracking_uri(uri: str | None = None) -> str:
    """Explicit `uri`, else `$MLFLOW_TRACKING_URI`, else the embedded SQLite file in the cwd."""
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def client(uri: str | None = None) -> MlflowClient:
    return MlflowClient(tracking_uri=tracking_uri(uri))


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
    return mlflow_client.create_experiment(name, artifact_location=location, tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND})

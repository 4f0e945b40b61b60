"""Resolve weight sources that live in MLflow (`run:<id>`, `cell:<hash>`) to local files."""

from __future__ import annotations

from pathlib import Path

from mlflow.tracking import MlflowClient

from backbones import WeightsError
from pretrain import BACKBONE_FILE

ARTIFACT = f"pretrain/{BACKBONE_FILE}"


def _download(client: MlflowClient, run_id: str, cache_dir: Path) -> str:
    target = cache_dir / "runs" / run_id
    path = target / BACKBONE_FILE
    if not path.is_file():
        target.mkdir(parents=True, exist_ok=True)
        try:
            downloaded = Path(client.download_artifacts(run_id, ARTIFACT, str(target)))
            if downloaded != path:
                downloaded.replace(path)
        except Exception as exc:  # noqa: BLE001 - MLflow raises several types for a missing artifact
            raise WeightsError(
                f"MLflow run {run_id} has no artifact {ARTIFACT} ({exc}); only pretraining runs export one."
            ) from exc
    return f"file:{path.resolve()}"


def resolve_weights(weights: str, *, client: MlflowClient, finished: dict, cache_dir: Path) -> str:
    """`cell:<hash>` -> the FINISHED pretraining run with that hash; `run:<id>` -> that run; both as `file:`."""
    if weights.startswith("cell:"):
        spec_hash = weights[len("cell:"):]
        run = finished.get(spec_hash)
        if run is None:
            raise WeightsError(
                f"Pretraining cell {spec_hash} has no FINISHED run, so there are no weights to fine-tune from. "
                "Look for its FAILED run in MLflow (tag medtl.spec_hash) and rerun the suite after fixing it."
            )
        return _download(client, run.info.run_id, cache_dir)
    if weights.startswith("run:"):
        run_id = weights[len("run:"):]
        try:
            run = client.get_run(run_id)
        except Exception as exc:  # noqa: BLE001
            raise WeightsError(f"MLflow run {run_id!r} (from weights {weights!r}) not found in {client.tracking_uri}.") from exc
        if run.info.status != "FINISHED":
            raise WeightsError(f"MLflow run {run_id} is {run.info.status}, not FINISHED; its checkpoint may be incomplete.")
        return _download(client, run_id, cache_dir)
    return weights

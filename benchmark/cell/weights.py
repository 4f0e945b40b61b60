"""The MLflow-backed weight sources (`run:<id>`, `cell:<hash>`), resolved to local `file:` checkpoints.

`backbones.weights` parses every weight string; this layer owns MLflow, so it plugs in the two
kinds that live there (`create_backbone(..., resolve=MlflowWeights(...).resolve)`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mlflow.tracking import MlflowClient

from backbones import WeightSource, WeightsError, weights_provenance
from pretrain import BACKBONE_FILE

ARTIFACT = f"pretrain/{BACKBONE_FILE}"


@dataclass
class MlflowWeights:
    """Resolves `run:` and `cell:` weights through one store, caching downloaded checkpoints."""

    client: MlflowClient  # the store the runs are in
    finished: dict  # spec hash -> FINISHED run (the suite's view, updated as cells finish)
    cache_dir: Path  # where downloaded checkpoints are kept, per run id

    def resolve(self, source: WeightSource) -> WeightSource:
        if source.kind == "cell":
            run = self.finished.get(source.ref)
            if run is None:
                raise WeightsError(
                    f"Pretraining cell {source.ref} has no FINISHED run, so there are no weights to fine-tune from. "
                    "Look for its FAILED run in MLflow (tag medtl.spec_hash) and rerun the suite after fixing it."
                )
            return self._download(run.info.run_id)
        if source.kind == "run":
            try:
                run = self.client.get_run(source.ref)
            except Exception as exc:  # noqa: BLE001 - MLflow raises several types for an unknown id
                raise WeightsError(f"MLflow run {source.ref!r} (from weights {source}) not found in {self.client.tracking_uri}.") from exc
            if run.info.status != "FINISHED":
                raise WeightsError(f"MLflow run {source.ref} is {run.info.status}, not FINISHED; its checkpoint may be incomplete.")
            return self._download(source.ref)
        return source

    def _download(self, run_id: str) -> WeightSource:
        target = self.cache_dir / "runs" / run_id
        path = target / BACKBONE_FILE
        if not path.is_file():
            target.mkdir(parents=True, exist_ok=True)
            try:
                downloaded = Path(self.client.download_artifacts(run_id, ARTIFACT, str(target)))
                if downloaded != path:
                    downloaded.replace(path)
            except Exception as exc:  # noqa: BLE001 - MLflow raises several types for a missing artifact
                raise WeightsError(
                    f"MLflow run {run_id} has no artifact {ARTIFACT} ({exc}); only pretraining runs export one."
                ) from exc
        return WeightSource("file", str(path.resolve()))


def provenance(backbone: str, weights: str, finished: dict) -> str:
    """The chain of pretraining a cell's weights went through, oldest first:
    `torchvision:ResNet18_Weights.IMAGENET1K_V1 > in1k-med:lapgyn4`.

    Each `cell:` link is a FINISHED pretraining run whose own params name where it started, so
    double transfer (ImageNet -> medical source -> target) reads as three links. The first link names
    the published weights exactly (`backbones.weights_provenance`: a hub id and commit, a torchvision
    weights enum), not just "imagenet": DINOv2 or CLIP weights of a timm model are not ImageNet's.
    """
    links: list[str] = []
    seen: set[str] = set()
    while weights.startswith("cell:") and weights not in seen:
        seen.add(weights)
        run = finished.get(weights[len("cell:"):])
        if run is None:
            break
        links.append(f"{run.data.params.get('source', '?')}:{run.data.params.get('task', '?')}")
        weights = run.data.params.get("weights", "?")
    base = weights if weights == "?" or weights.startswith("cell:") else weights_provenance(backbone, weights)
    return " > ".join([base, *reversed(links)])

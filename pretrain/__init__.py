"""Medical-source pretraining: train a backbone on a source task and export it with provenance.

    medtl benchmark benchmark/suites/smoke.yaml      # runs pretraining cells first, then fine-tuning

A fine-tuning cell loads the export with `file:<path>`, `run:<mlflow run id>` or `cell:<hash>`.
Imports `tasks.data` and `tasks.training` only: the backbone arrives built, and MLflow (the
`tracking` package) stays with the benchmark layer, which logs the exported files.
"""

from pretrain.export import BACKBONE_FILE, PROVENANCE_FILE, export_backbone, read_provenance
from pretrain.source import pretrain_backbone

__all__ = ["BACKBONE_FILE", "PROVENANCE_FILE", "export_backbone", "pretrain_backbone", "read_provenance"]

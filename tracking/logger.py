"""Lightning's MLFlowLogger, bound to a run the suite owns."""

from __future__ import annotations

from lightning.pytorch.loggers import MLFlowLogger
from lightning.pytorch.utilities import rank_zero_only


class CellLogger(MLFlowLogger):
    """Per-epoch metrics into an existing cell run.

    Two behaviours of the stock logger are switched off on purpose: hyperparameters (the cell's
    params are the flattened RunSpec, logged once by the runner; the module's own would duplicate
    them under other names), and `finalize`, which marks the run FINISHED when `fit` ends. The
    runner decides the final status after testing and artifacts, so a cell killed half-way is
    never mistaken for a finished one on resume.
    """

    def __init__(self, run_id: str, tracking_uri: str) -> None:
        super().__init__(run_id=run_id, tracking_uri=tracking_uri, log_model=False)

    @rank_zero_only
    def log_hyperparams(self, params) -> None:  # noqa: D102
        return

    @rank_zero_only
    def finalize(self, status: str = "success") -> None:  # noqa: D102
        return

"""Library output that says nothing to a researcher, silenced at its source for every cell and trial."""

from __future__ import annotations

import logging
import os
import warnings


def quiet_libraries() -> None:
    # Lightning's per-fit banners ("GPU available: False ...") repeat once per cell; the suite's
    # own progress says what matters. Real warnings still show.
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.pytorch.accelerators.cuda", "lightning.fabric.utilities.seed"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*LitLogger.*")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one bar per checkpoint fetch is noise

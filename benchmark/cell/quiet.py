"""Library output that says nothing to a researcher, silenced at its source for every cell and trial.

Each entry below is a message a cell cannot act on (it repeats per cell and pushes the suite's bar
into the scrollback); real warnings stay, shown once per process however often they recur.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings

# (message regex, why it says nothing here) for Python warnings.
NOISE = (
    (r".*`srun` command is available on your system but is not used", "cells run in this process; launchers use SLURM "
     "through submitit (benchmark/run/launchers.py), never by prepending srun"),
    (r".*isinstance\(treespec, LeafSpec\)", "a torch deprecation inside Lightning's own code"),
    (r".*does not have many workers", "num_workers is the suite's choice (num_workers: auto picks per machine)"),
    (r".*LitLogger", "Lightning's advert for its hosted logger; runs go to MLflow"),
    (r".*GPU available but not used", "--accelerator cpu is the user's choice"),
    (r".*The number of training batches .* is smaller than the logging interval", "tiny folds log every step anyway"),
    (r"Checkpoint directory .*resume.* exists and is not empty", "a cell's resume folder holds its run marker before "
     "the first epoch checkpoint (benchmark/cell/resume.py); named per cell, so it came back with every cell"),
)
# Loggers whose INFO lines repeat per cell ("GPU available: False", "Seed set to 0", MLflow's table creation).
INFO_LOGGERS = ("lightning.pytorch.utilities.rank_zero", "lightning.pytorch.accelerators.cuda", "lightning.fabric.utilities.seed",
                "lightning.fabric.utilities.rank_zero", "mlflow.store.db.utils", "alembic.runtime.migration")


_shown: set[tuple[type, str]] = set()  # (category, text) of the warnings shown so far in this process


def _show_once(message, category, filename, lineno, file=None, line=None) -> None:
    """warnings.showwarning: each (category, text) once per process, one line, above the progress bars.

    Python's own "default" and "once" actions keep their memory in a registry per module, which it
    empties whenever any code touches the filters (every `catch_warnings`: Lightning's checkpoint
    load, per cell), so a warning came back with every cell.
    """
    key = (category, str(message))
    if key in _shown:
        return
    _shown.add(key)
    from tqdm import tqdm

    text = " ".join(str(message).split())
    tqdm.write(f"{category.__name__}: {text} ({os.path.basename(filename)}:{lineno})", file=file or sys.stderr)


_installed = False  # _show_once goes in once per process


def quiet_libraries() -> None:
    """Silence NOISE and INFO_LOGGERS; show every other warning once per process (`_show_once`).

    Installed once: a caller already recording warnings (`warnings.catch_warnings(record=True)`, pytest.warns)
    around a later suite run keeps its record, since replacing `showwarning` inside it would bypass the record."""
    global _installed
    for name in INFO_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    if not _installed:
        warnings.showwarning = _show_once
        _installed = True
    for pattern, _why in NOISE:
        warnings.filterwarnings("ignore", message=pattern)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one bar per checkpoint fetch is noise

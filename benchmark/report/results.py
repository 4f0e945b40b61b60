"""A suite's results as the report reads them: from MLflow alone, finished and missing cells apart.

    medtl report benchmark/suites/smoke.yaml       # expected cells from the suite file
    medtl report 0123abcd...                       # or a suite's parent run id: no suite file needed

A cell without a FINISHED run is *missing*, listed with its last run's status and error (tag
`medtl.error`), never read as a zero and never quietly left out of n. A run still RUNNING is
missing too: either it is still going or the process that ran it was killed without recording
an end, and in neither case does it have results. Pretraining cells without a FINISHED run are
missing too (stage `pretrain`): a suite killed while pretraining leaves that KILLED cell as the
reason its fine-tuning cells never ran, and the report says so.

The source trained from nothing is called `scratch` in every table, whether the suite file said
`scratch` or its older alias `none` (which reads as "no entry" beside empty markers).
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from tracking.runs import ERROR_TAG, HASH_TAG, search_runs
from tracking.naming import EXTERNAL, SUITE_TAG

ROW_KEYS = ("source", "backbone", "strategy", "fraction")
CELL_KEYS = (*ROW_KEYS, "fold", "seed")
# mcc: the multiclass R_K statistic (Gorodkin; sklearn's matthews_corrcoef). f1 .. acc, auc: macro one-vs-rest.
# acc_micro: plain accuracy. micro_*: Medico 2018's scoring (pool every class's one-vs-rest TP/FP/FN/TN, then the
# metric; micro F1 = REC = PREC = accuracy in single-label data). pos_*: the suite's `target.positive_class` alone
# (Rahman's pneumonia recall / precision / F1). Absent keys (multi-label tasks, no positive class) are NaN.
METRICS = ("mcc", "f1", "rec", "prec", "spec", "acc", "auc", "acc_micro",
           "micro_mcc", "micro_f1", "micro_spec", "micro_acc", "pos_rec", "pos_prec", "pos_f1")
RUN_METRICS = {  # cells.csv column -> MLflow metric
    **{m: f"test/{m.replace('micro_', 'micro/').replace('pos_', 'pos/')}" for m in METRICS},
    "fps": "test/fps",
    "fit_seconds": "fit_seconds",
    "epochs_trained": "epochs_trained",
    "train_rows": "data/train_rows",
    "test_rows": "data/test_rows",
    "params": "cost/params",
    "flops_per_image": "cost/flops_per_image",
    # Calibration (tasks/training/calibration.py): raw, and after temperature scaling fitted on validation rows.
    **{f"{m}{ts}": f"test/{m}{ts}" for m in ("ece", "brier", "nll") for ts in ("", "_ts")},
    "temperature": "calibration/temperature",
}
# The range each metric can take: intervals are clipped to it and plot axes span it.
METRIC_RANGE = {m: ((-1.0, 1.0) if m in ("mcc", "micro_mcc") else (0.0, 1.0)) for m in METRICS}
# Source names as the report prints them: the suite schema's `none` is the scratch source.
SOURCE_NAMES = {"none": "scratch"}
SCRATCH = "scratch"
RUN_ID = re.compile(r"^[0-9a-f]{32}$")
STILL_RUNNING = ("left RUNNING: no end was recorded (the process running it was killed, or it is still running); "
                 "rerun the suite to run it again")


def source_name(source: str) -> str:
    """The report's name of a suite's source: `none` (the schema's alias of scratch) reads `scratch`."""
    return SOURCE_NAMES.get(source, source)


class ReportError(ValueError):
    """Nothing to report on; the message says what was looked for and where."""


@dataclass
class SuiteResults:
    name: str  # suite name
    experiment_id: str
    cells: pd.DataFrame  # one row per finished fine-tuning cell: CELL_KEYS, run_id, folds, select, RUN_METRICS
    missing: pd.DataFrame  # CELL_KEYS + stage, status, error, run_id for cells (pretraining too) without a FINISHED run
    expected_known: bool  # True when the suite file said which cells to expect
    client: object = None  # to read artifacts
    _artifacts: dict = field(default_factory=dict)

    def artifact_table(self, run_id: str, path: str, **read_csv) -> pd.DataFrame | None:
        """A CSV artifact of a cell run (cached); None when the run has none."""
        key = (run_id, path)
        if key not in self._artifacts:
            try:
                with tempfile.TemporaryDirectory() as tmp:
                    local = self.client.download_artifacts(run_id, path, tmp)
                    self._artifacts[key] = pd.read_csv(local, **read_csv)
            except Exception:  # noqa: BLE001 - an absent artifact (older cell, multi-label task) is reported as absent
                self._artifacts[key] = None
        return self._artifacts[key]

    def predictions(self, run_id: str) -> pd.DataFrame | None:
        return self.artifact_table(run_id, "test/predictions.csv")

    def confusion(self, run_id: str) -> pd.DataFrame | None:
        return self.artifact_table(run_id, "test/confusion_matrix.csv", index_col=0)


def row_strategy(params: dict) -> str:
    """A row's strategy as the report shows it: the registered name, with the suite's grid values in brackets
    (`vlad[vlad_k=64]`), so each grid value is a row of its own."""
    strategy, variant = params.get("strategy", "?"), params.get("variant") or ""
    return f"{strategy}[{variant}]" if variant else strategy


def registered(strategy: str) -> str:
    """The registry name inside a row's strategy label (`vlad[vlad_k=64]` -> `vlad`)."""
    return strategy.split("[", 1)[0]


def _spec_keys(params: dict) -> dict:
    return {"source": source_name(params.get("source", "?")), "backbone": params.get("backbone", "?"), "strategy": row_strategy(params),
            "fraction": float(params.get("fraction", 1.0)), "fold": int(params.get("fold", -1)), "seed": int(params.get("seed", 0))}


def _cell_row(run) -> dict:
    row = _spec_keys(run.data.params)
    row.update(run_id=run.info.run_id, spec_hash=run.data.tags.get(HASH_TAG, ""), folds=int(run.data.params.get("folds", 0)),
               select=run.data.params.get("hparams.select", "last"), tuning=run.data.tags.get("medtl.tuning", "none"))
    for column, metric in RUN_METRICS.items():
        row[column] = float(run.data.metrics.get(metric, np.nan))
    # External test sets (benchmark/cell/external.py): their metrics under their own names, external/<name>/mcc ...
    row.update({k: float(v) for k, v in run.data.metrics.items() if k.startswith(f"{EXTERNAL}/")})
    return row


NOT_REACHED = "no run yet: the suite has not reached this cell"


def _missing_row(keys: dict, run, stage: str = "finetune", waits_for: dict | None = None) -> dict:
    """A cell without a FINISHED run; `waits_for` is the missing row of the pretraining cell it needs, if any."""
    if run is None:
        error = NOT_REACHED
        if waits_for is not None:
            error = (f"waits for its pretraining cell ({waits_for['source']}/{waits_for['backbone']}), which is {waits_for['status']}; "
                     "rerun the suite")
        return {**keys, "stage": stage, "status": "NOT RUN", "error": error, "run_id": ""}
    status = run.info.status
    error = STILL_RUNNING if status == "RUNNING" else run.data.tags.get(ERROR_TAG) or f"{status} without a recorded error"
    if status == "KILLED" and not run.data.tags.get(ERROR_TAG):
        error = "KILLED: the suite was stopped (Ctrl-C, SIGTERM or a scheduler) while this cell ran; rerun the suite to run it again"
    return {**keys, "stage": stage, "status": status, "error": error, "run_id": run.info.run_id}


def _keys(cell) -> dict:
    return {"source": source_name(cell.source), "backbone": cell.backbone, "strategy": cell.row_strategy, "fraction": float(cell.fraction),
            "fold": int(cell.fold), "seed": int(cell.seed)}


def _latest(runs: list) -> dict:
    latest: dict = {}
    for run in runs:
        key = run.data.tags.get(HASH_TAG)
        if key and (key not in latest or run.info.start_time > latest[key].info.start_time):
            latest[key] = run
    return latest


def load_results(client, *, suite=None, parent_run_id: str | None = None) -> SuiteResults:
    """Finished and missing fine-tuning cells of `suite` (a loaded Suite) or of the suite that `parent_run_id` ran."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one bar per CSV fetched is noise
    if suite is not None:
        from tracking.naming import suite_experiment

        name = suite.name
        experiment = client.get_experiment_by_name(suite_experiment(suite.name))
        if experiment is None:
            raise ReportError(f"No MLflow experiment {suite_experiment(suite.name)!r} in {client.tracking_uri}: run "
                              f"`medtl benchmark {suite.path}` first, or pass --tracking-uri of the store that has it.")
        experiment_id = experiment.experiment_id
    else:
        try:
            parent = client.get_run(parent_run_id)
        except Exception as exc:  # noqa: BLE001 - MLflow raises its own exception types per store
            raise ReportError(f"Run {parent_run_id} not found in {client.tracking_uri} ({exc}).") from exc
        name = parent.data.tags.get(SUITE_TAG)
        if not name:
            raise ReportError(f"Run {parent_run_id} is not a medtl suite run (no medtl.suite tag); pass a suite's parent run id.")
        experiment_id = parent.info.experiment_id
    mine = [r for stage in ("finetune", "pretrain") for r in search_runs(client, experiment_id, f"tags.`medtl.stage` = '{stage}'")
            if r.data.tags.get(SUITE_TAG, name) == name]
    runs = [r for r in mine if r.data.tags.get("medtl.stage") == "finetune"]
    finished = _latest([r for r in runs if r.info.status == "FINISHED"])
    latest = _latest(runs)
    pretraining = _latest([r for r in mine if r.data.tags.get("medtl.stage") == "pretrain"])
    pretrained = {h for h, r in pretraining.items() if r.info.status == "FINISHED"}
    if suite is not None:
        expected = [(c.hash, _keys(c), c.weights[5:] if c.weights.startswith("cell:") else None) for c in suite.finetune_cells]
        expected_pretraining = [(c.hash, _keys(c)) for c in suite.cells if c.stage == "pretrain"]
    else:
        expected = [(h, _spec_keys(r.data.params), None) for h, r in latest.items()]
        expected_pretraining = [(h, _spec_keys(r.data.params)) for h, r in pretraining.items()]
    # A pretraining cell that did not finish is listed first: it is why the cells that need its weights did not run.
    # strategy "pretrain": its row reads source/backbone/pretrain wherever missing cells are printed
    blocking = {h: _missing_row({**keys, "strategy": "pretrain"}, pretraining.get(h), "pretrain")
                for h, keys in expected_pretraining if h not in pretrained}
    missing = list(blocking.values())
    cells = [_cell_row(finished[h]) for h, _, _ in expected if h in finished]
    missing += [_missing_row(keys, latest.get(h), waits_for=blocking.get(ref)) for h, keys, ref in expected if h not in finished]
    external = sorted({k for c in cells for k in c if k.startswith(f"{EXTERNAL}/")})
    cells_frame = pd.DataFrame(cells, columns=[*CELL_KEYS, "run_id", "spec_hash", "folds", "select", "tuning", *RUN_METRICS, *external])
    missing_frame = pd.DataFrame(missing, columns=[*CELL_KEYS, "stage", "status", "error", "run_id"])
    return SuiteResults(name, experiment_id, cells_frame, missing_frame, suite is not None, client)


def is_run_id(value: str) -> bool:
    return bool(RUN_ID.match(value)) and not Path(value).exists()

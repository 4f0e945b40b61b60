"""Every name medtl gives things in MLflow: experiments, tag keys and stage values, in one place.

A tag key written as a literal somewhere else drifts (a report that filters on "medtl.stage" while the
runner writes "medtl.Stage" finds nothing), so code reads these constants; tests do too.
"""

from __future__ import annotations

PREFIX = "medtl"


def suite_experiment(suite: str) -> str:
    """The experiment that holds a suite's cells and its parent runs."""
    return f"{PREFIX}-{suite}"


TUNING_SUFFIX = "-tuning"


def tuning_experiment(suite: str) -> str:
    """The experiment that holds a suite's Optuna studies (one parent run per study, one nested run per trial)."""
    return f"{PREFIX}-{suite}{TUNING_SUFFIX}"


def is_medtl_experiment(name: str) -> bool:
    return name.startswith(f"{PREFIX}-")


def study_name(suite: str, task: str, backbone: str, source: str, strategy: str, fold: int | None = None,
               seed: int | None = None) -> str:
    """The Optuna study of one compared row (and, with nested tuning, of one outer fold of it: the fold of the
    k-fold split that `seed` draws, `<row>.seed<s>.fold<f>`)."""
    base = f"{suite}.{task}.{backbone}.{source}.{strategy}"
    if seed is not None:
        base = f"{base}.seed{seed}"
    return base if fold is None else f"{base}.fold{fold}"


# --- tag keys -----------------------------------------------------------------------------------------------
HASH_TAG = "medtl.spec_hash"  # a cell's identity: what makes a suite resumable
HASH_V1_TAG = "medtl.spec_hash_v1"  # the format-1 hash of a migrated cell (benchmark.run.migrate)
FORMAT_TAG = "medtl.spec_format"  # the identity format a cell's hash was computed in
ERROR_TAG = "medtl.error"  # why a run FAILED (or a study stopped)
PARENT_TAG = "mlflow.parentRunId"  # the tag the MLflow UI nests runs by
STAGE_TAG = "medtl.stage"  # one of the STAGE_* values below
SUITE_TAG = "medtl.suite"
SOURCE_TAG = "medtl.source"
# On every run (and the experiment) of a `--stand-in` suite: what the generated run replaced (benchmark/plan/standin.py).
STANDIN_TAG = "medtl.stand_in"
TASK_TAG = "medtl.task"
BACKBONE_TAG = "medtl.backbone"
STRATEGY_TAG = "medtl.strategy"
FOLD_TAG = "medtl.fold"
FRACTION_TAG = "medtl.fraction"
CELL_TAG = "medtl.cell"  # the label of the cell a study's trials train
MEMBERS_TAG = "medtl.members"  # an ensemble's member hashes
STUDY_TAG = "medtl.study"
TRIAL_NUMBER_TAG = "medtl.trial_number"
TRIAL_STATE_TAG = "medtl.trial_state"  # COMPLETE, PRUNED, FAIL
TUNE_BUDGET_TAG = "medtl.tune_budget"
STORAGE_TAG = "medtl.storage"
BEST_TRIAL_TAG = "medtl.best_trial"
BEST_VALUE_TAG = "medtl.best_value"
TRIALS_TAG = "medtl.trials"
CLAIM_TAG = "medtl.claim"
HEARTBEAT_TAG = "medtl.heartbeat"
PID_TAG = "medtl.pid"
HOST_TAG = "medtl.host"
LAUNCHER_TAG = "medtl.launcher"
RESUMED_TAG = "medtl.resumed_from_epoch"  # a cell continued from its last epoch checkpoint
REPEATS_LOOKS_TAG = "medtl.repeats.looks"  # looks a `repeats` suite's sequential design analysed (benchmark/run/repeats.py)
REPEATS_DECIDED_TAG = "medtl.repeats.decided"  # "true" when its top rows' comparison crossed the boundary
AUDIT_TAG = "medtl.audit"  # a suite run's leakage audit: "<pairs> near-duplicate pairs" (benchmark/run/audit.py)
RESUMED_RUN_TAG = "medtl.resumed_from_run"  # the killed run (of the same cell) whose checkpoint a resumed cell continued
TUNE_SCOPE_TAG = "medtl.tune_scope"  # a tuned cell's study: nested (its outer fold's) | shared (optimistic) | official


def effective_tag(setting: str) -> str:
    """What a machine setting really ran as: medtl.precision_effective, medtl.memory_format_effective, ..."""
    return f"{PREFIX}.{setting}_effective"


# The machine settings a cell run and every trial run of its row record (effective_tag of each).
MACHINE_SETTINGS = ("precision", "memory_format", "pipeline", "compile", "devices")

# --- values of STAGE_TAG ------------------------------------------------------------------------------------
STAGE_SUITE = "suite"  # a suite invocation's parent run
STAGE_PRETRAIN = "pretrain"
STAGE_FINETUNE = "finetune"
STAGE_STUDY = "study"  # an Optuna study's parent run
STAGE_TRIAL = "trial"  # one Optuna trial


# --- external test sets (benchmark/cell/external.py logs them, benchmark/report/external.py reads them) ----
EXTERNAL = "external"  # metrics external/<name>/mcc ..., artifacts external/<name>/predictions.csv


def external_prefix(name: str) -> str:
    """The metric prefix of a cell's scores on external test set `name`."""
    return f"{EXTERNAL}/{name}/"


def external_predictions(name: str) -> str:
    """The artifact path of a cell's predictions on external test set `name`."""
    return f"{EXTERNAL}/{name}/predictions.csv"


# --- transferability before training (benchmark/cell/transferability.py) -------------------------------------
TRANSFERABILITY = "transferability"  # the suite parent run's metrics transferability/<score>/<source>/<backbone>
TRANSFERABILITY_TABLE = "transferability.csv"  # and its artifact transferability/transferability.csv

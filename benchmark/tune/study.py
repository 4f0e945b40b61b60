"""Optuna studies: tune each compared row of a suite on validation rows only, with pruning and many workers.

    medtl tune benchmark/suites/tune-smoke.yaml --n-trials 6              # make tune
    medtl tune SUITE --storage sqlite:///optuna.db --workers 2 --timeout 600
    medtl tune SUITE --storage postgresql+psycopg2://user@host/db --workers 4   # workers on several machines
    medtl tune SUITE --storage optuna-journal.log --workers 2              # a journal file (no "://": a path)
    optuna-dashboard sqlite:///optuna.db                                   # browse the studies (same storage argument)

Nested (the default, suite key `tune.scope`, benchmark/plan/tuning.py): a k-fold suite has one study per
row (task, backbone, source, strategy) and outer fold (seed, fold), named
`<suite>.<task>.<backbone>.<source>.<strategy>.seed<s>.fold<f>`; its trials train that fold's first cell
(first fraction) and only its training rows, and its best values go to that fold's cells. `tune.scope:
shared` (and an official split) has one study per row, `<suite>.<task>.<backbone>.<source>.<strategy>`,
training the row's first cell; with k-fold every fold's cell then uses values chosen on a fold whose
training rows include their test rows (optimistic: cells carry tag medtl.tune_scope = shared).
A trial draws values from the search spaces of the strategy's hyperparameter table (`HParam.space`,
shared and per-strategy entries) and is scored by the best per-epoch `val/mcc` (the model-selection
metric) on the validation rows carved from its fold's training rows; the trial is a cell without its
test pass (benchmark/tune/trial.py), so its fold's test rows never enter tuning.

Budget (`benchmark.tune.storage`): `n_trials` is the study's total. A worker takes a trial only while COMPLETE + PRUNED + RUNNING
trials are fewer than the budget, under a lock (`budget_lock`): a file beside a local storage (sqlite,
journal file), a PostgreSQL advisory lock on that server (so workers on several machines never
overshoot either), a per-machine file for other servers. FAIL trials do not count, so a rerun replaces
them; MAX_FAILURES failed trials in a row stop the worker and the command (TuningFailed: the study, the
last trial's error, the fix). Trials left RUNNING by a dead process (SIGKILL, a lost node) are marked
FAIL at start-up: on this host when their process is gone, elsewhere through Optuna's heartbeat (RDB
storages other than sqlite).

MLflow: experiment `medtl-<suite>-tuning`, one parent run per study (reused by reruns) with the
optimisation history and parameter importances as artifacts, one nested run per trial with its number,
params, per-epoch `val/*` and its state (tag `medtl.trial_state`: COMPLETE, PRUNED, FAIL). Optuna's
MLflowCallback is not used: it loses the parent with nested runs (optuna#5148) and breaks with several
jobs (optuna#4088).

Optuna, Lightning and MLflow are imported inside the functions that use them: workers are spawned
processes that import this module first, and `medtl tune --help` should not pay 15 s of imports.
"""

from __future__ import annotations

import multiprocessing
import os
import socket
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tracking.naming import BACKBONE_TAG, BEST_TRIAL_TAG, BEST_VALUE_TAG, CELL_TAG, ERROR_TAG, FOLD_TAG, FRACTION_TAG, SOURCE_TAG, STAGE_TAG, STORAGE_TAG, STRATEGY_TAG, STUDY_TAG, TASK_TAG, TRIALS_TAG, TUNE_BUDGET_TAG, TUNE_SCOPE_TAG, tuning_experiment

from benchmark.plan.tuning import cell_study, effective_scope

from tasks.training import get_strategy
from tracking.studies import DEFAULT_STORAGE, open_storage, shown_url

from benchmark.tune.storage import budget_lock, counted, fail_dead_trials, close_dead_trial_runs
from benchmark.tune.trial import OBJECTIVE, Objective

MAX_FAILURES = 3  # consecutive failed trials after which a worker stops (FAIL trials do not use the budget)
EXIT_TRIALS_FAILED = 3  # a worker process's exit code after MAX_FAILURES failed trials in a row


class TuningFailed(RuntimeError):
    """A study stopped because its trials keep failing; the message names the study, the last error and the fix."""


@dataclass(frozen=True)
class StudyRow:
    """One compared row of a suite and the cell its trials train."""

    suite: str  # suite name, part of the study name (two suites' rows never share a study)
    spec: Any  # benchmark.plan.spec.RunSpec: the row's first fine-tuning cell (fold, seed, fraction, fixed hparams)
    # The suite's machine settings (throughput.memory_format / pipeline / compile, ...) as sorted items, and its
    # DataLoader workers: trials run on the machine the row's cells run on (benchmark.cell.route.machine_for).
    throughput: tuple = ()
    num_workers: int | str = "auto"
    # The suite's tune.scope (benchmark/plan/tuning.py): nested, a study per outer fold (`spec` is that fold's first
    # cell); shared, one per row (`spec` is the row's first cell).
    scope: str = "shared"

    @property
    def short(self) -> str:
        """The row as the runs table shows it: source/backbone/strategy (the suite and task are the experiment's)."""
        return f"{self.spec.source}/{self.spec.backbone}/{self.spec.strategy}"

    @property
    def name(self) -> str:
        return cell_study(self.suite, self.scope, self.spec)


def study_rows(suite) -> list[StudyRow]:
    """The studies of a suite, each with the cell its trials train: one per tunable row, or with `tune.scope: nested`
    one per (row, outer fold) of a k-fold suite. Every study gets the same budget, so every row gets the same trials."""
    rows: dict[str, StudyRow] = {}
    for spec in suite.finetune_cells:
        if get_strategy(spec.strategy).tunable:
            row = StudyRow(suite.name, spec, tuple(sorted(suite.throughput.items())), suite.num_workers,
                           suite.tune_scope)
            rows.setdefault(row.name, row)
    return list(rows.values())


# Why a strategy kind has no study (the study's pruner and objective read per-epoch validation scores).
UNTUNED_WHY = {
    "features": "fitted on frozen features, no epochs to score (its own fit picks its settings, e.g. svm's C by "
                "cross-validation on training rows)",
    "combining": "trains nothing: it averages finished cells' predictions",
}


def untuned_rows(suite) -> dict[str, str]:
    """Rows (source/backbone/strategy) whose strategy no study can tune -> why, for `medtl tune`'s first lines."""
    rows: dict[str, str] = {}
    for spec in suite.finetune_cells:
        strategy = get_strategy(spec.strategy)
        if not strategy.tunable:
            why = UNTUNED_WHY.get(strategy.kind, f"strategy kind {strategy.kind!r} is not tunable")
            rows.setdefault(f"{spec.source}/{spec.backbone}/{spec.strategy}", f"{strategy.kind} strategy: {why}")
    return rows


def search_space(strategy: str) -> dict:
    """name -> Optuna space of the strategy's tuned entries (a function here so tests can sabotage it)."""
    return get_strategy(strategy).search_space()


@dataclass
class TuneSettings:
    storage: str = DEFAULT_STORAGE  # Optuna storage URL or journal file
    n_trials: int = 20  # total budget of each study
    timeout: float | None = None  # seconds per worker, then it stops taking trials
    workers: int = 1  # worker processes per study
    pruner: str = "median"  # median | hyperband | none
    seed: int = 0  # TPE seed (worker i uses seed + i, so workers do not suggest the same values)
    tracking_uri: str | None = None
    data_root: Path | None = None
    accelerator: str = "auto"  # as `medtl benchmark`: the cells and the trials of a row run on the same device
    space: dict | None = None  # name -> space; None: the strategy's table (tests sabotage it)
    callbacks: list = field(default_factory=list)  # extra Lightning callbacks per trial (tests record rows)


def make_pruner(name: str, epochs: int | str = "auto"):
    """`epochs`: the most steps a trial reports (Hyperband's max_resource; "auto": the first complete trial's)."""
    import optuna

    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=epochs)
    if name == "none":
        return optuna.pruners.NopPruner()
    raise ValueError(f"Unknown pruner {name!r}. Valid pruners: median, hyperband, none.")


def tune_row(row: StudyRow, settings: TuneSettings, echo=print):
    """Run the row's study up to its budget (resuming what the storage holds); returns the optuna Study."""
    import optuna

    from tracking import ensure_experiment, environment_tags, start_run
    from tracking.store import open_store

    client = open_store(settings.tracking_uri)
    experiment_id = ensure_experiment(client, tuning_experiment(row.suite))
    parents = client.search_runs([experiment_id], f"tags.`{STUDY_TAG}` = '{row.name}' and tags.`medtl.stage` = 'study'")
    parent_id = parents[0].info.run_id if parents else start_run(
        client, experiment_id, name=f"study {row.short}",
        tags={STUDY_TAG: row.name, STAGE_TAG: "study", **environment_tags()})
    client.update_run(parent_id, status="RUNNING")
    try:
        storage = open_storage(settings.storage)
        study = optuna.create_study(study_name=row.name, storage=storage, direction="maximize", load_if_exists=True)
    except Exception as exc:  # noqa: BLE001 - drivers raise their own types; the message says what to check
        error = TuningFailed(
            f"study {row.name}: cannot open the Optuna storage {shown_url(settings.storage)}: {type(exc).__name__}: "
            f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''}. Fix: check --storage (sqlite:///file.db, "
            "postgresql+psycopg2://user@host:port/db, or a journal file path), that its server is running and accepts this "
            "user, and that its driver (psycopg2 for PostgreSQL) is installed.")
        client.set_tag(parent_id, ERROR_TAG, str(error)[:4000])
        client.set_terminated(parent_id, "FAILED")
        raise error from None
    except BaseException:  # Ctrl-C / SIGTERM while connecting: the study run must not stay RUNNING
        client.set_terminated(parent_id, "KILLED")
        raise
    study.set_user_attr("cell", row.spec.label)
    for number in fail_dead_trials(study):
        echo(f"{row.name}: trial {number} was left RUNNING by a process that is gone; marked FAIL.")
    close_dead_trial_runs(client, experiment_id, study)
    spec = row.spec
    # What the suite's report says about the row (benchmark/report/document.py, "Tuning"), without opening the storage.
    for key, value in {TUNE_BUDGET_TAG: settings.n_trials, STORAGE_TAG: shown_url(settings.storage), TASK_TAG: spec.task,
                       BACKBONE_TAG: spec.backbone, SOURCE_TAG: spec.source, STRATEGY_TAG: spec.strategy,
                       FRACTION_TAG: spec.fraction, FOLD_TAG: spec.fold, CELL_TAG: spec.label,
                       TUNE_SCOPE_TAG: effective_scope(row.scope, spec.folds)}.items():
        client.set_tag(parent_id, key, str(value))
    args = (row, settings, parent_id, experiment_id)
    try:
        if settings.workers <= 1:
            work(0, *args)
        else:
            # spawn, not fork: torch and sqlite connections do not survive a fork of a process that used them.
            context = multiprocessing.get_context("spawn")
            procs = [context.Process(target=_worker_process, args=(i, *args)) for i in range(settings.workers)]
            for proc in procs:
                proc.start()
            try:
                for proc in procs:
                    proc.join()
            except BaseException:  # Ctrl-C / SIGTERM here: each worker records its trial FAIL and its run KILLED
                for proc in procs:
                    proc.terminate()
                for proc in procs:
                    proc.join(60)
                raise
            bad = [p.exitcode for p in procs if p.exitcode]
            if EXIT_TRIALS_FAILED in bad:
                raise failed_study(optuna.load_study(study_name=row.name, storage=storage), settings)
            if bad:
                raise RuntimeError(f"{row.name}: {len(bad)} tuning worker(s) exited with {bad}; rerun to complete the budget.")
    except TuningFailed as exc:
        client.set_tag(parent_id, ERROR_TAG, str(exc)[:4000])
        _log_study(client, parent_id, optuna.load_study(study_name=row.name, storage=storage))
        client.set_terminated(parent_id, "FAILED")
        raise
    except BaseException:
        client.set_terminated(parent_id, "KILLED")
        raise
    study = optuna.load_study(study_name=row.name, storage=storage)
    _log_study(client, parent_id, study)
    client.set_terminated(parent_id, "FINISHED")
    states = {s.name: sum(t.state == s for t in study.trials) for s in optuna.trial.TrialState}
    echo(f"{row.name}: " + ", ".join(f"{n} {k}" for k, n in states.items() if n) +
         (f"; best {OBJECTIVE} {study.best_value:.3f} with {study.best_params}" if states["COMPLETE"] else ""))
    return study


def failed_study(study, settings: TuneSettings) -> TuningFailed:
    """The error for a study whose last MAX_FAILURES trials of a worker failed, from what the storage holds."""
    from optuna.trial import TrialState

    failed = study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
    last = max(failed, key=lambda t: t.number) if failed else None
    error = last.user_attrs.get("error", "no error recorded") if last else "no error recorded"
    return TuningFailed(
        f"study {study.study_name} (storage {shown_url(settings.storage)}): {MAX_FAILURES} trials in a row failed, the last "
        f"(trial {last.number if last else '?'}) with {error}. {counted(study)} of {settings.n_trials} trials are done. Fix: correct "
        "what every trial rejects (the suite's hparams or data, or a search space of the strategy's hyperparameter table; each "
        "trial's error is tag medtl.error of its MLflow run), then rerun the same command: failed trials do not use the budget.")


def interrupted_message(exc, budget: int) -> str:
    """What `medtl tune` says when SIGINT / SIGTERM (`exc`, tracking.runs.Interrupted) stopped it."""
    name = "SIGTERM" if exc.exit_code == 143 else "interrupted (SIGINT)"
    return (f"medtl: {name}; the running trial is recorded FAIL (its MLflow run KILLED) and the study run KILLED. Rerun "
            f"the same command to resume: the study goes on to its budget of {budget} (FAIL trials do not count).")


def _worker_process(index: int, *args) -> None:
    """A spawned worker: failed trials end it with EXIT_TRIALS_FAILED (the parent reports them), not a traceback;
    SIGINT / SIGTERM end its trial FAIL (run KILLED) and it with 130 / 143."""
    import signal

    from tracking.runs import Interrupted, defer_signal, in_store_call, interrupted

    def stop(signum, frame):
        if in_store_call(frame):  # a storage transaction is open: stop once it ends (tracking.runs.defer_signal)
            return defer_signal(signum)
        for s in (signal.SIGINT, signal.SIGTERM):  # once: the second signal must not cut the recording short
            signal.signal(s, signal.SIG_IGN)
        raise interrupted(signum)

    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, stop)
    try:
        work(index, *args)
    except TuningFailed:
        sys.exit(EXIT_TRIALS_FAILED)
    except Interrupted as exc:
        sys.exit(exc.exit_code)


def work(index: int, row: StudyRow, settings: TuneSettings, parent_id: str, experiment_id: str) -> None:
    """One worker: take trials from the budget until it is spent or `timeout` passes."""
    import optuna
    from optuna.storages._heartbeat import get_heartbeat_thread  # what study.optimize uses; ask/tell needs it by hand

    from benchmark.cell.quiet import quiet_libraries

    quiet_libraries()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.TPESampler(seed=settings.seed + index)
    study = optuna.load_study(study_name=row.name, storage=open_storage(settings.storage), sampler=sampler,
                              pruner=make_pruner(settings.pruner, int(row.spec.hp.get("epochs", 0)) or "auto"))
    space = settings.space if settings.space is not None else search_space(row.spec.strategy)
    objective = Objective(row, settings, parent_id, experiment_id, space)
    deadline = time.monotonic() + settings.timeout if settings.timeout else float("inf")
    failures = 0
    while time.monotonic() < deadline:
        with budget_lock(settings.storage, row.name):
            if counted(study) >= settings.n_trials:
                return
            trial = study.ask()
            trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        with get_heartbeat_thread(trial._trial_id, study._storage):
            try:
                value = objective(trial)
            except optuna.TrialPruned:
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                failures = 0
                _trial_line(row, study, trial, settings.n_trials, "PRUNED", trial.user_attrs.get("epochs_trained"))
            except Exception as exc:  # noqa: BLE001 - a failed trial is recorded FAIL (and its run FAILED); the study goes on
                error = f"{type(exc).__name__}: {exc}"
                trial.set_user_attr("error", error[:2000])
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
                failures += 1
                print(f"{row.name}: trial {trial.number} FAILED: {error}", flush=True)
                if failures >= MAX_FAILURES:  # FAIL trials do not use the budget: a broken objective would loop
                    raise failed_study(study, settings) from None
            except BaseException as exc:  # Ctrl-C / SIGTERM (Interrupted): FAIL, not RUNNING until a rerun reaps it
                trial.set_user_attr("error", f"{type(exc).__name__}: {exc}"[:2000])
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
                raise
            else:
                study.tell(trial, value)
                failures = 0
                _trial_line(row, study, trial, settings.n_trials, "COMPLETE", value)



def _trial_line(row: StudyRow, study, trial, budget: int, state: str, detail) -> None:
    """One line per trial: `medtl tune` would otherwise be silent for the whole study."""
    from tqdm import tqdm

    done = counted(study)
    what = f"{OBJECTIVE} {detail:.3f}" if state == "COMPLETE" else f"after {detail} epoch(s)"
    try:
        best = f", best {study.best_value:.3f} (trial {study.best_trial.number})"
    except ValueError:  # no complete trial yet
        best = ""
    tqdm.write(f"{row.short}: trial {trial.number} ({done}/{budget}) {state}, {what}{best}", file=sys.stdout)


def _log_study(client, parent_id: str, study) -> None:
    """Best trial as tags and Optuna's plots as artifacts of the study's parent run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna
    from optuna.visualization import matplotlib as plots

    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    client.set_tag(parent_id, TRIALS_TAG, str(len(study.trials)))
    for state in optuna.trial.TrialState:
        client.set_tag(parent_id, f"medtl.trials.{state.name}", str(sum(t.state == state for t in study.trials)))
    if not complete:  # no best trial; Optuna would draw empty axes (and warn)
        client.set_tag(parent_id, "medtl.plots", "not drawn: no complete trial")
        return
    client.set_tag(parent_id, BEST_TRIAL_TAG, str(study.best_trial.number))
    client.set_tag(parent_id, BEST_VALUE_TAG, f"{study.best_value:.6g}")
    for k, v in study.best_params.items():
        client.set_tag(parent_id, f"best.{k}", str(v))
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        for name, draw in (("optimization_history", plots.plot_optimization_history),
                           ("param_importances", plots.plot_param_importances)):
            try:
                ax = draw(study)
            except Exception as exc:  # noqa: BLE001 - importances need 2+ complete trials with varied params
                client.set_tag(parent_id, f"medtl.plot.{name}", f"not drawn: {type(exc).__name__}: {exc}"[:500])
                continue
            figure = ax.figure if hasattr(ax, "figure") else ax[0].figure
            path = Path(tmp) / f"{name}.png"
            figure.savefig(path, dpi=100, bbox_inches="tight")
            plt.close(figure)
            client.log_artifact(parent_id, str(path), "optuna")


def tune_suite(suite, settings: TuneSettings, echo=print) -> list:
    """Tune every tunable row of the suite with the same budget; returns the studies."""
    from tracking import ensure_experiment
    from tracking.store import open_store, ui_hint

    rows, untuned = study_rows(suite), untuned_rows(suite)
    tuned = len({r.short for r in rows})
    scope = effective_scope(suite.tune_scope, rows[0].spec.folds) if rows else "shared"
    echo(f"Tuning {tuned} of {tuned + len(untuned)} row(s) of suite {suite.name} in {len(rows)} stud{'y' if len(rows) == 1 else 'ies'} "
         f"({scope}: {'one per row and outer fold' if scope == 'nested' else 'one per row'}) with {settings.n_trials} trials each "
         f"(storage {shown_url(settings.storage)}, {settings.workers} worker(s), pruner {settings.pruner}).")
    for row, why in untuned.items():
        echo(f"  not tuned: {row}: {why}")
    client = open_store(settings.tracking_uri)
    experiment_id = ensure_experiment(client, tuning_experiment(suite.name))
    echo(f"MLflow experiment {tuning_experiment(suite.name)} (one parent run per study, a run per trial): "
         f"{ui_hint(client.tracking_uri, experiment_id)}")
    return [tune_row(row, settings, echo) for row in rows]


"""Optuna studies: tune each compared row of a suite on validation rows only, with pruning and many workers.

    medtl tune benchmark/suites/tune-smoke.yaml --n-trials 6              # make tune
    medtl tune SUITE --storage sqlite:///optuna.db --workers 2 --timeout 600
    medtl tune SUITE --storage postgresql+psycopg2://user@host/db --workers 4   # workers on several machines
    medtl tune SUITE --storage optuna-journal.log --workers 2              # a journal file (no "://": a path)
    optuna-dashboard sqlite:///optuna.db                                   # browse the studies (same storage argument)

One study per row (task, backbone, source, strategy), named `<suite>.<task>.<backbone>.<source>.<strategy>`.
A trial trains the row's first cell (its fold, seed and fraction) with values drawn from the search
spaces of the strategy's hyperparameter table (`HParam.space`, shared and per-strategy entries) and is
scored by the best per-epoch `val/mcc` (the model-selection metric) on that fold's validation rows;
the trial ends when its fit ends (StopBeforeTest), before the test pass, so the outer test fold never
enters tuning. (The study tunes on one
outer fold: its test rows are held out, but the other folds' test rows are among its training rows.)

Budget: `n_trials` is the study's total. A worker takes a trial only while COMPLETE + PRUNED + RUNNING
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
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import multiprocessing
import os
import socket
import sys
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tracking.claims import pid_alive  # the same liveness check cell claims use

STORAGE_ENV = "MEDTL_OPTUNA_STORAGE"  # the storage suites read `hparams_from: optuna` from
DEFAULT_STORAGE = "sqlite:///optuna.db"
OBJECTIVE = "val/mcc"  # the model-selection metric (hparams `select: mcc`), maximised
HEARTBEAT_S, GRACE_S = 10, 60  # Optuna heartbeat of RDB storages: a trial silent for GRACE_S is stale
SQLITE_TIMEOUT_S = 120  # several processes on one sqlite file wait for its write lock instead of failing
MAX_FAILURES = 3  # consecutive failed trials after which a worker stops (FAIL trials do not use the budget)
STATE_TAG, STUDY_TAG = "medtl.trial_state", "medtl.study"
EXIT_TRIALS_FAILED = 3  # a worker process's exit code after MAX_FAILURES failed trials in a row
# Fault injection for tests/benchmark/test_tuning.py: "<trial number>:<file>" makes that trial write the file after
# its first epoch is logged, then wait until it is killed, so a test can SIGKILL a trial known to be mid-run.
HOLD_ENV = "MEDTL_TEST_HOLD_TRIAL"


class TuningFailed(RuntimeError):
    """A study stopped because its trials keep failing; the message names the study, the last error and the fix."""


def storage_url(value: str | None = None) -> str:
    return value or os.environ.get(STORAGE_ENV) or DEFAULT_STORAGE


@functools.cache
def open_storage(url: str):
    """An Optuna RDB URL (sqlite:///, postgresql://...) or a journal file path; one per process, since two
    SQLAlchemy engines on one sqlite file in one process can wait on each other's lock."""
    import optuna
    from optuna.storages.journal import JournalFileBackend

    if "://" not in url:
        return optuna.storages.JournalStorage(JournalFileBackend(url))
    if url.startswith("sqlite"):
        # No heartbeat on sqlite: its thread's writes contend for the one file lock with the trial's own writes
        # (seen to stall a worker); a sqlite file is local, so dead trials are found by pid (fail_dead_trials).
        # One connection per process (StaticPool): with a pool, two connections of this process were seen to wait
        # on each other's lock until the timeout.
        from sqlalchemy.pool import StaticPool

        return optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": SQLITE_TIMEOUT_S},
                                                              "poolclass": StaticPool})
    with warnings.catch_warnings():  # the heartbeat is "experimental" since Optuna 2.9; it is what finds dead workers
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RDBStorage(url, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S)


def shown_url(url: str) -> str:
    """The storage as it may be printed and tagged: a server URL without its password."""
    if "://" not in url:
        return url
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def _lock_path(url: str) -> Path:
    """A file beside a local storage that serialises taking a trial from the budget; for a server, one per machine."""
    if "://" not in url:
        return Path(url + ".budget.lock")
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        return Path(url[len("sqlite:///"):] + ".budget.lock")
    return Path(tempfile.gettempdir()) / f"medtl-optuna-{hashlib.sha256(url.encode()).hexdigest()[:16]}.budget.lock"


def advisory_key(study: str) -> int:
    """The PostgreSQL advisory lock (a signed 64-bit key) that guards the budget of `study`."""
    return int.from_bytes(hashlib.sha256(f"medtl.budget:{study}".encode()).digest()[:8], "big", signed=True)


@contextlib.contextmanager
def budget_lock(url: str, study: str):
    """Held while a worker counts the budget and takes a trial. On PostgreSQL a session advisory lock (keyed by the
    study) serves every machine on that server, and the server drops it if the worker dies; elsewhere a file lock."""
    import filelock

    storage = open_storage(url)
    if "://" in url and getattr(storage, "engine", None) is not None and storage.engine.dialect.name == "postgresql":
        from sqlalchemy import text

        key = advisory_key(study)
        with storage.engine.connect() as connection:
            connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": key})
            connection.commit()
            try:
                yield
            finally:
                connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
                connection.commit()
        return
    with filelock.FileLock(str(_lock_path(url))):
        yield


def study_name(suite: str, task: str, backbone: str, source: str, strategy: str) -> str:
    return f"{suite}.{task}.{backbone}.{source}.{strategy}"


@dataclass(frozen=True)
class StudyRow:
    """One compared row of a suite and the cell its trials train."""

    suite: str  # suite name, part of the study name (two suites' rows never share a study)
    spec: Any  # benchmark.spec.RunSpec: the row's first fine-tuning cell (fold, seed, fraction, fixed hparams)

    @property
    def name(self) -> str:
        s = self.spec
        return study_name(self.suite, s.task, s.backbone, s.source, s.strategy)


def tunable(strategy: str) -> bool:
    """Strategies trained by Lightning's loop (the pruner needs its epochs); not ensembles or SVMs."""
    from tasks.training import get_strategy

    entry = get_strategy(strategy)
    return entry.fit is None and not entry.combines


def study_rows(suite) -> list[StudyRow]:
    rows: dict[str, StudyRow] = {}
    for spec in suite.finetune_cells:
        if tunable(spec.strategy):
            row = StudyRow(suite.name, spec)
            rows.setdefault(row.name, row)
    return list(rows.values())


def search_space(strategy: str) -> dict:
    """name -> Optuna space of every tuned entry of the strategy's table (shared and its own)."""
    from tasks.training import get_strategy

    return {name: entry.space for name, entry in get_strategy(strategy).table.items() if entry.space is not None}


def best_params(name: str, url: str | None = None) -> dict | None:
    """The best COMPLETE trial's params of study `name`, or None when it has none (or does not exist)."""
    import optuna

    storage = open_storage(storage_url(url))
    if name not in optuna.study.get_all_study_names(storage):
        return None
    study = optuna.load_study(study_name=name, storage=storage)
    if not any(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials):
        return None
    return dict(study.best_trial.params)


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
    accelerator: str = "cpu"
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
    experiment_id = ensure_experiment(client, f"medtl-{row.suite}-tuning")
    parents = client.search_runs([experiment_id], f"tags.`{STUDY_TAG}` = '{row.name}' and tags.`medtl.stage` = 'study'")
    parent_id = parents[0].info.run_id if parents else start_run(
        client, experiment_id, name=f"study {row.name}",
        tags={STUDY_TAG: row.name, "medtl.stage": "study", **environment_tags()})
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
        client.set_tag(parent_id, "medtl.error", str(error)[:4000])
        client.set_terminated(parent_id, "FAILED")
        raise error from None
    study.set_user_attr("cell", row.spec.label)
    for number in fail_dead_trials(study):
        echo(f"{row.name}: trial {number} was left RUNNING by a process that is gone; marked FAIL.")
    _close_dead_trial_runs(client, experiment_id, study)
    spec = row.spec
    # What the suite's report says about the row (benchmark/report.py, "Tuning"), without opening the storage.
    for key, value in {"medtl.tune_budget": settings.n_trials, "medtl.storage": shown_url(settings.storage), "medtl.task": spec.task,
                       "medtl.backbone": spec.backbone, "medtl.source": spec.source, "medtl.strategy": spec.strategy,
                       "medtl.fraction": spec.fraction, "medtl.fold": spec.fold, "medtl.cell": spec.label}.items():
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
            for proc in procs:
                proc.join()
            bad = [p.exitcode for p in procs if p.exitcode]
            if EXIT_TRIALS_FAILED in bad:
                raise failed_study(optuna.load_study(study_name=row.name, storage=storage), settings)
            if bad:
                raise RuntimeError(f"{row.name}: {len(bad)} tuning worker(s) exited with {bad}; rerun to complete the budget.")
    except TuningFailed as exc:
        client.set_tag(parent_id, "medtl.error", str(exc)[:4000])
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


def _worker_process(index: int, *args) -> None:
    """A spawned worker: failed trials end it with EXIT_TRIALS_FAILED (the parent reports them), not a traceback."""
    try:
        work(index, *args)
    except TuningFailed:
        sys.exit(EXIT_TRIALS_FAILED)


def fail_dead_trials(study) -> list[int]:
    """Mark FAIL the RUNNING trials whose worker is gone: on this host by pid, elsewhere by heartbeat."""
    import optuna
    from optuna.trial import TrialState

    if isinstance(study._storage, optuna.storages.RDBStorage) or hasattr(study._storage, "get_heartbeat_interval"):
        with contextlib.suppress(Exception), warnings.catch_warnings():  # no heartbeat support: the pid check remains
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
    failed = []
    host = socket.gethostname()
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = trial.user_attrs.get("worker", "")
        worker_host, _, pid = worker.rpartition(":")
        if worker_host == host and pid.isdigit() and not pid_alive(int(pid)):
            if study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL):
                failed.append(trial.number)
    return failed


def _close_dead_trial_runs(client, experiment_id: str, study) -> None:
    """Trial runs still RUNNING whose trial is FAIL (their process died) end KILLED, tagged FAIL."""
    from optuna.trial import TrialState

    failed = {str(t.number) for t in study.trials if t.state == TrialState.FAIL}
    for run in client.search_runs([experiment_id], f"tags.`{STUDY_TAG}` = '{study.study_name}' and attributes.status = 'RUNNING' "
                                                   "and tags.`medtl.stage` = 'trial'"):
        if run.data.tags.get("medtl.trial_number") in failed:
            client.set_tag(run.info.run_id, STATE_TAG, "FAIL")
            client.set_tag(run.info.run_id, "medtl.error", "stale: its worker process is gone")
            client.set_terminated(run.info.run_id, "KILLED")


def counted(study) -> int:
    """Trials that use the budget: finished (COMPLETE, PRUNED) or running now."""
    from optuna.trial import TrialState

    # WAITING (enqueued) trials are not counted: `ask` runs them before drawing new ones.
    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)))


def work(index: int, row: StudyRow, settings: TuneSettings, parent_id: str, experiment_id: str) -> None:
    """One worker: take trials from the budget until it is spent or `timeout` passes."""
    import optuna
    from optuna.storages._heartbeat import get_heartbeat_thread  # what study.optimize uses; ask/tell needs it by hand

    from benchmark.runner import _quiet_libraries

    _quiet_libraries()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.TPESampler(seed=settings.seed + index)
    study = optuna.load_study(study_name=row.name, storage=open_storage(settings.storage), sampler=sampler,
                              pruner=make_pruner(settings.pruner, int(row.spec.hp.get("epochs", 0)) or "auto"))
    objective = Objective(row, settings, parent_id, experiment_id)
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
            except Exception as exc:  # noqa: BLE001 - a failed trial is recorded FAIL (and its run FAILED); the study goes on
                error = f"{type(exc).__name__}: {exc}"
                trial.set_user_attr("error", error[:2000])
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
                failures += 1
                print(f"{row.name}: trial {trial.number} FAILED: {error}", flush=True)
                if failures >= MAX_FAILURES:  # FAIL trials do not use the budget: a broken objective would loop
                    raise failed_study(study, settings) from None
            else:
                study.tell(trial, value)
                failures = 0


class Objective:
    """Train the row's cell with the trial's values; the best per-epoch validation MCC is the score."""

    def __init__(self, row: StudyRow, settings: TuneSettings, parent_id: str, experiment_id: str) -> None:
        from tracking.store import open_store

        self.row, self.settings = row, settings
        self.parent_id, self.experiment_id = parent_id, experiment_id
        self.client = open_store(settings.tracking_uri)
        self.space = settings.space if settings.space is not None else search_space(row.spec.strategy)
        self.task = None

    def __call__(self, trial) -> float:
        import optuna
        import torch
        from optuna_integration import PyTorchLightningPruningCallback

        from backbones import create_backbone
        from benchmark.cell import load_cell_task
        from benchmark.weights import MlflowWeights
        from tasks.training import get_strategy, train_and_test
        from tracking import finished_runs_by_hash, start_run
        from tracking.runs import log_params

        spec = self.row.spec
        run_id = start_run(self.client, self.experiment_id, name=f"trial {trial.number}", parent_id=self.parent_id,
                           tags={STUDY_TAG: self.row.name, "medtl.stage": "trial", "medtl.trial_number": str(trial.number),
                                 "medtl.cell": spec.label})
        try:
            values = {name: space(trial, name) for name, space in self.space.items()}
            hp = get_strategy(spec.strategy).resolve(spec.hp, values)
            log_params(self.client, run_id, {**{f"hparams.{k}": v for k, v in hp.items()}, "trial_number": trial.number})
            if self.task is None:
                self.task = load_cell_task(spec, self.settings.data_root)
            finished = finished_runs_by_hash(self.client, self._cells_experiment()) if spec.weights.startswith("cell:") else {}
            torch.manual_seed(spec.seed)
            backbone = create_backbone(spec.backbone, spec.weights,
                                       resolve=MlflowWeights(self.client, finished, Path(".medtl_cache")).resolve)
            history = ValidationHistory(self.client, run_id, trial.number)
            callbacks = [history, PyTorchLightningPruningCallback(trial, monitor=OBJECTIVE), *self.settings.callbacks,
                         StopBeforeTest()]
            try:
                train_and_test(self.task, backbone, fold=spec.fold, k=spec.folds, seed=spec.seed, hp=hp, size=spec.image_size,
                               strategy=spec.strategy, fraction=spec.fraction, accelerator=self.settings.accelerator,
                               callbacks=callbacks)
                raise RuntimeError(f"{spec.label}: training returned without ending its fit; nothing to score.")
            except Trained:
                pass  # the fit ended and the test pass never started: no test-fold row reached this trial
            finally:
                trial.set_user_attr("epochs_trained", len(history.scores))
            if not history.scores:
                raise RuntimeError(f"{spec.label}: no {OBJECTIVE} was logged (no validation rows?); nothing to tune on.")
            value = max(history.scores)  # a validation number by construction
        except optuna.TrialPruned:
            self._end(run_id, "PRUNED", "FINISHED")
            raise
        except Exception as exc:
            self.client.set_tag(run_id, "medtl.error", f"{type(exc).__name__}: {exc}"[:4000])
            self._end(run_id, "FAIL", "FAILED")
            raise
        except BaseException:
            self._end(run_id, "FAIL", "KILLED")
            raise
        self.client.log_metric(run_id, "objective", value)
        self._end(run_id, "COMPLETE", "FINISHED")
        return value

    def _end(self, run_id: str, state: str, status: str) -> None:
        self.client.set_tag(run_id, STATE_TAG, state)
        self.client.set_terminated(run_id, status)

    def _cells_experiment(self) -> str:
        experiment = self.client.get_experiment_by_name(f"medtl-{self.row.suite}")
        if experiment is None:
            raise RuntimeError(f"{self.row.spec.label}: its weights come from a pretraining cell of suite {self.row.suite}; "
                               f"run `medtl benchmark` on the suite first (tune_budget does this in order).")
        return experiment.experiment_id


def _validation_history_base():
    from lightning.pytorch.callbacks import Callback

    return Callback


class Trained(Exception):
    """A trial's fit has ended (raised by StopBeforeTest)."""


class StopBeforeTest(_validation_history_base()):
    """Ends a trial when its fit ends. `train_and_test` (the cells' own routine, which trials reuse unchanged) goes on to
    test on the outer test fold; a trial must never see those rows, so it stops here, as the pruner stops a fit."""

    def on_fit_end(self, trainer, pl_module) -> None:
        raise Trained


class ValidationHistory(_validation_history_base()):
    """Records the per-epoch objective (and logs every val/* metric to the trial's run)."""

    def __init__(self, client, run_id: str, trial_number: int = -1) -> None:
        self.client, self.run_id, self.trial_number = client, run_id, trial_number
        self.scores: list[float] = []

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking:
            return
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
        if OBJECTIVE in metrics:
            self.scores.append(metrics[OBJECTIVE])
        from tracking.runs import log_metrics

        log_metrics(self.client, self.run_id, metrics, step=pl_module.current_epoch)
        number, _, marker = os.environ.get(HOLD_ENV, "").partition(":")
        if number == str(self.trial_number) and marker:
            Path(marker).write_text(str(os.getpid()))
            threading.Event().wait()  # until killed: the test SIGKILLs this trial mid-run


def _log_study(client, parent_id: str, study) -> None:
    """Best trial as tags and Optuna's plots as artifacts of the study's parent run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna
    from optuna.visualization import matplotlib as plots

    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    client.set_tag(parent_id, "medtl.trials", str(len(study.trials)))
    for state in optuna.trial.TrialState:
        client.set_tag(parent_id, f"medtl.trials.{state.name}", str(sum(t.state == state for t in study.trials)))
    if not complete:  # no best trial; Optuna would draw empty axes (and warn)
        client.set_tag(parent_id, "medtl.plots", "not drawn: no complete trial")
        return
    client.set_tag(parent_id, "medtl.best_trial", str(study.best_trial.number))
    client.set_tag(parent_id, "medtl.best_value", f"{study.best_value:.6g}")
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
    rows = study_rows(suite)
    echo(f"Tuning {len(rows)} row(s) of suite {suite.name} with {settings.n_trials} trials each "
         f"(storage {shown_url(settings.storage)}, {settings.workers} worker(s), pruner {settings.pruner}).")
    return [tune_row(row, settings, echo) for row in rows]

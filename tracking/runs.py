"""Cell runs: create, record success or failure, and find what already finished (resume)."""

from __future__ import annotations

import os
import traceback
from collections.abc import Mapping

import pandas as pd
from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient
from mlflow.utils.time import get_current_time_millis

from tracking.artifacts import log_text
from tracking.naming import ERROR_TAG, HASH_TAG, PARENT_TAG

_BATCH = 100  # MLflow accepts at most 100 params per log_batch call


def start_run(client: MlflowClient, experiment_id: str, *, name: str, tags: Mapping[str, str], parent_id: str | None = None) -> str:
    tags = dict(tags)
    if parent_id:
        tags[PARENT_TAG] = parent_id
    return client.create_run(experiment_id, run_name=name, tags=tags).info.run_id


def log_params(client: MlflowClient, run_id: str, params: Mapping[str, str]) -> None:
    items = [Param(k, str(v)) for k, v in params.items()]
    for i in range(0, len(items), _BATCH):
        client.log_batch(run_id, params=items[i : i + _BATCH])


def log_metrics(client: MlflowClient, run_id: str, metrics: Mapping[str, float], step: int = 0) -> None:
    now = get_current_time_millis()
    items = [Metric(k, float(v), now, step) for k, v in metrics.items()]
    for i in range(0, len(items), 1000):
        client.log_batch(run_id, metrics=items[i : i + 1000])


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived: the cell and the suite stop and are recorded KILLED.

    A BaseException but not a KeyboardInterrupt on purpose: Lightning turns a KeyboardInterrupt
    inside `fit` into `sys.exit(1)`, which would record the cell FAILED and exit 1; anything else
    it re-raises unchanged after its own clean-up.
    """

    def __init__(self, signum: int) -> None:
        import signal

        self.signum = signum
        super().__init__(f"interrupted by {signal.Signals(signum).name}")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum  # the shell's convention: 130 for SIGINT, 143 for SIGTERM


# Code that holds a store transaction open. An exception raised in its midst (a signal's) can leave the
# SQLite write lock held by a connection nobody returns, and the KILLED bookkeeping that follows then waits
# out the busy timeout (20 s) and fails with "database is locked" (seen: Ctrl-C of a suite exiting 1 with a
# traceback; a --launcher local worker outliving its launcher by the full 20 s).
_STORE_CODE = tuple(f"{os.sep}{part}{os.sep}" for part in ("sqlalchemy", os.path.join("mlflow", "store"),
                                                            os.path.join("optuna", "storages"), "sqlite3"))
RETRY_S = 0.05  # how soon a signal that arrived inside a store call is delivered again
_deferred: dict = {}  # signum -> its pending re-delivery (threading.Timer), at most one per signal


def in_store_call(frame) -> bool:
    """Whether `frame` (a signal handler's) or a caller of it is running store code (see _STORE_CODE)."""
    while frame is not None:
        if any(part in frame.f_code.co_filename for part in _STORE_CODE):
            return True
        frame = frame.f_back
    return False


def _redeliver(signum: int) -> None:
    import _thread

    if _deferred.pop(signum, None) is not None:
        _thread.interrupt_main(signum)  # as if it arrived now; nothing once its handler is gone (SIG_DFL / SIG_IGN)


def defer_signal(signum: int) -> None:
    """Deliver `signum` to the main thread again RETRY_S from now (once, however often it is deferred meanwhile)."""
    if signum not in _deferred:
        import threading

        timer = threading.Timer(RETRY_S, _redeliver, (signum,))
        timer.daemon = True
        _deferred[signum] = timer
        timer.start()


def interrupted(signum: int) -> Interrupted:
    """The Interrupted to raise for `signum`; a re-delivery still pending is dropped (the stop is under way)."""
    for timer in _deferred.values():
        timer.cancel()
    _deferred.clear()
    return Interrupted(signum)


# Ends of a cell that are the user's or the system's doing, not the cell's fault (Lightning's
# SystemExit(1) after a KeyboardInterrupt included).
STOPPED = (KeyboardInterrupt, Interrupted, SystemExit)


class CellRun:
    """One MLflow run for one cell; FINISHED only if the `with` body completes.

    An exception marks the run FAILED with the error as a tag and the traceback as `error.txt`,
    then propagates (the suite runner decides whether to go on). Ctrl-C, SIGTERM (`Interrupted`)
    and SystemExit mark it KILLED. `run_id` adopts a run created earlier (a cell's claim).
    """

    def __init__(
        self,
        client: MlflowClient,
        experiment_id: str,
        *,
        name: str,
        tags: Mapping[str, str],
        params: Mapping[str, str],
        parent_id: str | None = None,
        run_id: str = "",
    ) -> None:
        self.client = client
        self.experiment_id = experiment_id
        self.name, self.tags, self.params, self.parent_id = name, dict(tags), dict(params), parent_id
        self.run_id = run_id

    def __enter__(self) -> "CellRun":
        if not self.run_id:
            self.run_id = start_run(self.client, self.experiment_id, name=self.name, tags=self.tags, parent_id=self.parent_id)
        log_params(self.client, self.run_id, self.params)
        return self

    def log_metrics(self, metrics: Mapping[str, float], step: int = 0) -> None:
        log_metrics(self.client, self.run_id, metrics, step)

    def set_tags(self, tags: Mapping[str, str]) -> None:
        self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc is None:
            self.client.set_terminated(self.run_id, "FINISHED")
            return False
        status = "KILLED" if isinstance(exc, STOPPED) else "FAILED"
        try:
            self.client.set_tag(self.run_id, ERROR_TAG, f"{type(exc).__name__}: {exc}"[:4000])
            log_text(self.client, self.run_id, "".join(traceback.format_exception(exc_type, exc, tb)), "error.txt")
        finally:
            self.client.set_terminated(self.run_id, status)
        return False


def search_runs(client: MlflowClient, experiment_id: str, filter_string: str = "") -> list:
    """Every run of the experiment matching `filter_string`, across result pages."""
    runs, token = [], None
    while True:
        page = client.search_runs([experiment_id], filter_string=filter_string, max_results=1000, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def finished_runs_by_hash(client: MlflowClient, experiment_id: str) -> dict[str, object]:
    """spec hash -> the most recent FINISHED run carrying it (what a resumed suite skips)."""
    found: dict[str, object] = {}
    for run in search_runs(client, experiment_id, "attributes.status = 'FINISHED'"):
        key = run.data.tags.get(HASH_TAG)
        if key and (key not in found or run.info.start_time > found[key].info.start_time):
            found[key] = run
    return found


def runs_frame(runs: list) -> pd.DataFrame:
    """Runs as rows: run_id, status, params.*, metrics.*, tags.* (like `mlflow.search_runs`)."""
    rows = []
    for run in runs:
        row = {"run_id": run.info.run_id, "status": run.info.status, "start_time": run.info.start_time}
        row.update({f"params.{k}": v for k, v in run.data.params.items()})
        row.update({f"metrics.{k}": v for k, v in run.data.metrics.items()})
        row.update({f"tags.{k}": v for k, v in run.data.tags.items()})
        rows.append(row)
    return pd.DataFrame(rows)

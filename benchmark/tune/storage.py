"""The budget of a study across workers and machines, and trials left behind by dead workers.

Budget: `n_trials` is the study's total. A worker takes a trial only while COMPLETE + PRUNED + RUNNING
trials are fewer than the budget, under a lock (`budget_lock`): a file beside a local storage (sqlite,
journal file), a PostgreSQL advisory lock on that server (so workers on several machines never
overshoot either), a per-machine file for other servers. Trials left RUNNING by a dead process
(SIGKILL, a lost node) are marked FAIL at start-up: on this host when their process is gone, elsewhere
through Optuna's heartbeat (RDB storages other than sqlite).
"""

from __future__ import annotations

import contextlib
import hashlib
import socket
import tempfile
import warnings
from pathlib import Path

from tracking.claims import pid_alive  # the same liveness check cell claims use
from tracking.naming import ERROR_TAG, STUDY_TAG, TRIAL_NUMBER_TAG, TRIAL_STATE_TAG
from tracking.studies import open_storage


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


def close_dead_trial_runs(client, experiment_id: str, study) -> None:
    """Trial runs still RUNNING whose trial is FAIL (their process died) end KILLED, tagged FAIL."""
    from optuna.trial import TrialState

    failed = {str(t.number) for t in study.trials if t.state == TrialState.FAIL}
    for run in client.search_runs([experiment_id], f"tags.`{STUDY_TAG}` = '{study.study_name}' and attributes.status = 'RUNNING' "
                                                   "and tags.`medtl.stage` = 'trial'"):
        if run.data.tags.get(TRIAL_NUMBER_TAG) in failed:
            client.set_tag(run.info.run_id, TRIAL_STATE_TAG, "FAIL")
            client.set_tag(run.info.run_id, ERROR_TAG, "stale: its worker process is gone")
            client.set_terminated(run.info.run_id, "KILLED")


def counted(study) -> int:
    """Trials that use the budget: finished (COMPLETE, PRUNED) or running now."""
    from optuna.trial import TrialState

    # WAITING (enqueued) trials are not counted: `ask` runs them before drawing new ones.
    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)))


"""Optuna storages: which one a command uses, how to open it, how to print it, and the best trial of a study.

    medtl tune SUITE --storage sqlite:///optuna.db         # the default (MEDTL_OPTUNA_STORAGE overrides it)
    optuna-dashboard sqlite:///optuna.db                     # browse the studies

Here, beside the MLflow store, because both where results are kept and who reads them (suites with
`hparams_from: optuna`, the tuner, the report) sit at different layers. Imports no project package.
"""

from __future__ import annotations

import functools
import os
import warnings

STORAGE_ENV = "MEDTL_OPTUNA_STORAGE"  # the storage suites read `hparams_from: optuna` from
DEFAULT_STORAGE = "sqlite:///optuna.db"
HEARTBEAT_S, GRACE_S = 10, 60  # Optuna heartbeat of RDB storages: a trial silent for GRACE_S is stale
SQLITE_TIMEOUT_S = 120  # several processes on one sqlite file wait for its write lock instead of failing


def storage_url(value: str | None = None) -> str:
    from tracking import settings

    return value or settings.read(STORAGE_ENV) or DEFAULT_STORAGE


def storage_source(value: str | None = None) -> str:
    """Where `storage_url(value)` came from, for messages: the flag, the environment variable or the default."""
    return "--storage" if value else f"${STORAGE_ENV}" if os.environ.get(STORAGE_ENV) else f"the default {DEFAULT_STORAGE}"


def check_storage(value: str | None = None) -> str:
    """The storage URL a command uses, checked before anything is recorded: a database that answers within
    tracking.preflight.CONNECT_TIMEOUT_S (or a sqlite file / journal file whose folder can hold it). Raises
    StoreError naming where the URL came from, the URL (password hidden), the cause and the fix."""
    from pathlib import Path

    from tracking.preflight import StoreError, _writable, check_database

    url, source = storage_url(value), storage_source(value)
    if "://" not in url:  # a journal file path
        folder = Path(url).absolute().parent
        if not folder.is_dir() or not _writable(folder):
            why = "does not exist" if not folder.is_dir() else "is not writable"
            raise StoreError(f"Optuna journal file {url} (from {source}): folder {folder} {why}. Fix: mkdir -p {folder}, "
                             f"or correct {source}.")
        return url
    check_database(url, what="Optuna storage", source=source)
    return url


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
        # A bounded connect: a server that accepts and never answers would block the study without limit.
        connect = {"connect_args": {"connect_timeout": 10}} if url.startswith(("postgresql", "mysql", "mariadb")) else {}
        return optuna.storages.RDBStorage(url, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S, engine_kwargs=connect)


def shown_url(url: str) -> str:
    """The storage as it may be printed and tagged: a server URL without its password."""
    if "://" not in url:
        return url
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def best_params(name: str, url: str | None = None) -> dict | None:
    """The best COMPLETE trial's params of study `name`, or None when it has none (or does not exist)."""
    import optuna

    try:
        storage = open_storage(storage_url(url))
        names = optuna.study.get_all_study_names(storage)
    except Exception as exc:  # noqa: BLE001 - the precise cause when the check finds it, else the driver's words
        check_storage(url)
        from tracking.preflight import StoreError

        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise StoreError(f"Optuna storage {shown_url(storage_url(url))} (from {storage_source(url)}) cannot be read: "
                         f"{first}. Fix: correct {storage_source(url)}, or restore the storage file.") from None
    if name not in names:
        return None
    study = optuna.load_study(study_name=name, storage=storage)
    if not any(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials):
        return None
    return dict(study.best_trial.params)


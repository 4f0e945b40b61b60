"""Check a tracking store before using it: every failure in seconds, naming the URI and the fix.

    medtl benchmark smoke          # an unreachable server, a read-only folder or a damaged mlruns.db stops here

MLflow left alone would retry an unreachable server for minutes (7 retries, backoff 2), spin in
SQLite's retry loop in a read-only folder, and end in a SQLAlchemy traceback on a damaged file or
when two suites create a fresh store at once. Each of those is checked (or serialised) here.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

SQLITE_HEADER = b"SQLite format 3\x00"
PROBE_TIMEOUT_S = 5.0  # one request to learn whether the server answers at all
# MLflow's own retry policy for the rest of the run, unless the user set it: 3 attempts of at most
# 8 s each with 1 s, 2 s backoff stay under 30 s for a server that stops answering mid-suite.
HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                 "MLFLOW_HTTP_REQUEST_TIMEOUT": "8"}


class StoreError(RuntimeError):
    """A tracking store that cannot be used; the message names the URI and how to fix it."""


def sqlite_path(uri: str) -> Path | None:
    """The database file of a `sqlite:///` URI (relative to the working directory), else None."""
    if not uri.startswith("sqlite:///"):
        return None
    path = uri[len("sqlite:///"):].split("?", 1)[0]
    return Path(path) if path not in ("", ":memory:") else None


def _writable(folder: Path) -> bool:
    # os.access answers for the real uid (root passes everything), so a mount that is read-only
    # is also caught by the statvfs flag.
    try:
        read_only_mount = bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except OSError:
        return False
    return folder.is_dir() and os.access(folder, os.W_OK | os.X_OK) and not read_only_mount


def _check_http(uri: str) -> None:
    import requests

    for key, value in HTTP_DEFAULTS.items():
        os.environ.setdefault(key, value)
    try:
        # Any HTTP answer (even 404 or 401) proves a server is there; only silence is fatal here.
        requests.get(uri.rstrip("/") + "/health", timeout=PROBE_TIMEOUT_S)
    except requests.RequestException as exc:
        reason = getattr(exc.args[0], "reason", None) if exc.args else None  # urllib3's, without the retry wrapper
        exc = reason or exc
        host = urlparse(uri).netloc or uri
        raise StoreError(
            f"Tracking server {uri} does not answer ({type(exc).__name__}: {str(exc)[:200]}). Fix: start it "
            f"(e.g. `mlflow server --host {host.split(':')[0]} --port {urlparse(uri).port or 5000}`), correct "
            "MLFLOW_TRACKING_URI / --tracking-uri, or unset it to use the embedded sqlite:///mlruns.db."
        ) from None


def _check_sqlite(uri: str, path: Path, *, create: bool) -> None:
    where = path.resolve().parent
    if not path.exists():
        if not create:
            raise StoreError(
                f"Nothing to report: there is no tracking store at {path.resolve()} ({uri}). Fix: run "
                "`medtl benchmark SUITE` in this folder first, or point --tracking-uri / MLFLOW_TRACKING_URI at the "
                "store that holds the runs."
            )
        if not _writable(where):
            raise StoreError(
                f"Cannot create the tracking store {uri}: folder {where} is not writable. Fix: run from a folder you "
                "can write to, or set MLFLOW_TRACKING_URI=sqlite:////<writable folder>/mlruns.db."
            )
        return
    if not path.is_file():
        raise StoreError(f"Tracking store {uri}: {path.resolve()} is not a file. Fix: point the URI at an MLflow "
                         "database file.")
    with open(path, "rb") as f:
        header = f.read(len(SQLITE_HEADER))
    damaged = (f"Tracking store {uri}: {path.resolve()} is not a readable SQLite database ({{why}}). Fix: move it aside "
               f"(`mv {path} {path}.damaged`) and rerun to start a fresh store (finished cells in it are lost unless "
               "you restore a backup), or point MLFLOW_TRACKING_URI at another store.")
    if header and header != SQLITE_HEADER:
        raise StoreError(damaged.format(why="its header is not SQLite's"))
    if header:
        try:
            with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as db:
                verdict = db.execute("PRAGMA quick_check").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            raise StoreError(damaged.format(why=str(exc))) from None
        if verdict != "ok":
            raise StoreError(damaged.format(why=f"quick_check: {verdict}"))
    if create and not (os.access(path, os.W_OK) and _writable(where)):
        raise StoreError(
            f"Tracking store {uri} is read-only here ({path.resolve()} or its folder cannot be written; SQLite needs "
            "both). Fix: run from a folder you can write to, or copy the store there and set MLFLOW_TRACKING_URI."
        )


def check_store(uri: str, *, create: bool = True) -> None:
    """Raise StoreError unless the store at `uri` answers (server) or is a sound, writable database (SQLite).

    With `create`, the artifact folder (`./mlartifacts` for local stores) must be creatable too.
    """
    scheme = urlparse(uri).scheme
    if scheme in ("http", "https"):
        _check_http(uri)
        return
    path = sqlite_path(uri)
    if path is not None:
        _check_sqlite(uri, path, create=create)
    if create and (path is not None or scheme in ("", "file")):
        artifacts = Path.cwd() / "mlartifacts"
        if not _writable(artifacts if artifacts.exists() else Path.cwd()):
            raise StoreError(f"Artifacts of {uri} go to {artifacts}, which cannot be written. Fix: run from a folder "
                             "you can write to.")


@contextmanager
def creating_store(uri: str, *, create: bool = True) -> Iterator[None]:
    """Make a fresh SQLite store appear whole or not at all, one process at a time.

    MLflow builds its schema in many migration steps; a process killed half-way would leave a file
    MLflow refuses ("out-of-date database schema"), and a second process opening a half-made schema
    fails. So the schema is built in a temporary file beside the target and renamed into place
    (atomic), under a file lock (filelock) that serialises the processes that may create it.
    """
    path = sqlite_path(uri)
    if path is None or not create or path.exists():
        yield
        return
    from filelock import FileLock, Timeout
    from mlflow.tracking import MlflowClient

    lock = FileLock(str(path) + ".lock", timeout=120)
    try:
        with lock:
            if not path.exists():
                for old in path.parent.glob(f".{path.name}.creating-*"):  # left by a killed creation
                    old.unlink(missing_ok=True)
                scratch = path.with_name(f".{path.name}.creating-{os.getpid()}")
                MlflowClient(f"sqlite:///{scratch.resolve()}").search_experiments(max_results=1)
                os.replace(scratch, path)
                # Waiters find the store there once they hold the lock and skip creating it; later
                # processes never take the lock. So it can go, leaving no clutter beside mlruns.db.
                Path(lock.lock_file).unlink(missing_ok=True)
            yield
    except Timeout:
        raise StoreError(f"Tracking store {uri}: another process has held {lock.lock_file} for 120 s while creating "
                         "the store. Fix: wait for it, or delete the lock file if no medtl process is running.") from None

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


# --- databases (an MLflow backend, an Optuna RDB storage): bounded, with the cause ------------------------------

CONNECT_TIMEOUT_S = 5  # one connection attempt to a database server; libpq's minimum is 2 s
# libpq (psycopg2) reads this for every connection of the process and its children: MLflow's SQL store and Optuna's
# RDB storage open their own engines, and a server that accepts and never answers would block them without limit.
DATABASE_DEFAULTS = {"PGCONNECT_TIMEOUT": "10"}
DRIVER_PACKAGES = {"MySQLdb": "mysqlclient", "pymysql": "PyMySQL", "psycopg2": "psycopg2-binary", "psycopg": "psycopg[binary]",
                   "mysql": "mysql-connector-python", "pg8000": "pg8000", "pyodbc": "pyodbc", "oracledb": "oracledb",
                   "cx_Oracle": "cx_Oracle", "asyncpg": "asyncpg", "pymssql": "pymssql"}
DIALECTS = ("postgresql", "mysql", "mariadb", "sqlite", "mssql", "oracle")  # SQLAlchemy's own


def bound_service_clients() -> None:
    """Give every service client of this process a time limit unless the user chose one (a command's first line):
    MLflow's HTTP client (timeout, retries) and libpq connections."""
    for key, value in {**HTTP_DEFAULTS, **DATABASE_DEFAULTS}.items():
        os.environ.setdefault(key, value)


def shown(uri: str) -> str:
    """A database URL as it may be printed: the password replaced by ***."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(uri).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - an unparsable URL: hide anything between ':' and '@' after the scheme
        import re

        return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", uri)


def check_database(uri: str, *, what: str, source: str, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """Connect to the database `uri` once, within `timeout_s`; StoreError naming `what` (e.g. "Optuna storage"),
    where the URL came from (`source`: "--storage", "$MEDTL_OPTUNA_STORAGE", ...), the URL (password hidden),
    the actual cause (unknown dialect, missing driver, missing folder, nothing listening, no answer, refused login,
    no such database) and its fix."""
    import threading

    import sqlalchemy

    where = f"{what} {shown(uri)} (from {source})"
    try:
        url = sqlalchemy.engine.make_url(uri)
    except Exception as exc:  # noqa: BLE001 - any unparsable URL gets the same message
        raise StoreError(f"{where} is not a database URL ({exc}). Fix: correct {source}, e.g. sqlite:///optuna.db or "
                         "postgresql+psycopg2://USER@HOST:5432/DB.") from None
    backend = url.get_backend_name()
    if backend not in DIALECTS:
        raise StoreError(f"{where}: unknown database kind {backend!r}. Valid kinds: {', '.join(DIALECTS)} (e.g. "
                         f"postgresql+psycopg2://USER@HOST:5432/DB). Fix: correct {source}.")
    if backend == "sqlite":
        path = url.database or ""
        if path and path != ":memory:":
            folder = Path(path).absolute().parent
            if not folder.is_dir():
                raise StoreError(f"{where}: folder {folder} does not exist, so the database file cannot be created. "
                                 f"Fix: mkdir -p {folder}, or correct {source}.")
            if not Path(path).exists() and not _writable(folder):
                raise StoreError(f"{where}: folder {folder} is not writable, so the database file cannot be created. "
                                 f"Fix: point {source} at a folder you can write to.")
        return  # a local file: nothing to wait for; its content is checked by whoever opens it
    try:
        args = {"connect_timeout": int(max(timeout_s, 2))} if backend in ("postgresql", "mysql", "mariadb") else {}
        engine = sqlalchemy.create_engine(url, connect_args=args, poolclass=sqlalchemy.pool.NullPool)
    except ModuleNotFoundError as exc:
        module = (exc.name or "").split(".")[0]
        package = DRIVER_PACKAGES.get(module, module)
        raise StoreError(f"{where}: its driver {module!r} (for {url.drivername}) is not installed. Fix: pip install "
                         f"{package}, or name an installed driver in the URL (e.g. postgresql+psycopg2://).") from None
    except Exception as exc:  # noqa: BLE001 - sqlalchemy's NoSuchModuleError: a dialect+driver it does not know
        raise StoreError(f"{where}: {url.drivername!r} is not a database SQLAlchemy can open ({exc}). Fix: correct "
                         f"{source} (e.g. postgresql+psycopg2://USER@HOST:5432/DB).") from None
    outcome: dict = {}

    def connect() -> None:
        try:
            with engine.connect():
                outcome["ok"] = True
        except BaseException as exc:  # noqa: BLE001 - reported by the waiting thread
            outcome["error"] = exc

    # A thread as the backstop of the driver's own timeout (drivers without one, a libpq that ignores it).
    thread = threading.Thread(target=connect, name="medtl-db-check", daemon=True)
    thread.start()
    thread.join(timeout_s + 3)
    address = f"{url.host or 'localhost'}:{url.port or {'postgresql': 5432, 'mysql': 3306, 'mariadb': 3306}.get(backend, '?')}"
    if "ok" in outcome:
        engine.dispose()
        return
    error = outcome.get("error")
    text = str(error or "").strip()
    first = text.splitlines()[0] if text else type(error).__name__
    if error is None or "timeout expired" in text or "timed out" in text.lower():
        raise StoreError(f"{where}: {address} accepts connections but no database answered within {timeout_s:g} s (a "
                         "different service on that port, a stuck server or a firewall that drops packets). Fix: check "
                         f"the host and port in {source} (`pg_isready -h {url.host or 'localhost'} -p {url.port or 5432}`).")
    if "Connection refused" in text or "Can't connect" in text:
        server = {"postgresql": "PostgreSQL", "mysql": "MySQL", "mariadb": "MariaDB"}.get(backend, "the database server")
        raise StoreError(f"{where} cannot be reached: nothing listens at {address} ({first}). Fix: start {server} "
                         f"there, or correct the host and port in {source}.")
    if "could not translate host name" in text or "Name or service not known" in text:
        raise StoreError(f"{where}: host {url.host!r} is not known ({first}). Fix: correct the host in {source}.")
    if "password authentication failed" in text or "Access denied" in text or "no password supplied" in text:
        raise StoreError(f"{where}: the server at {address} refused user {url.username!r} ({first}). Fix: correct the user "
                         f"and password in {source} (or ~/.pgpass).")
    if "does not exist" in text and "database" in text:
        raise StoreError(f"{where}: the server at {address} has no database {url.database!r}. Fix: createdb "
                         f"{url.database} (as a user who may), or correct {source}.")
    raise StoreError(f"{where} cannot be opened: {first}. Fix: check {source}: host, port, user, database and that the "
                     "server accepts this client.")


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
    if scheme.split("+")[0] in DIALECTS and scheme != "sqlite":
        check_database(uri, what="Tracking store", source="--tracking-uri / $MLFLOW_TRACKING_URI")
        return
    path = sqlite_path(uri)
    if path is not None:
        _check_sqlite(uri, path, create=create)
    if create and (path is not None or scheme in ("", "file")):
        artifacts = Path.cwd() / "mlartifacts"
        if not _writable(artifacts if artifacts.exists() else Path.cwd()):
            raise StoreError(f"Artifacts of {uri} go to {artifacts}, which cannot be written. Fix: run from a folder "
                             "you can write to.")


def build_schema(path: Path) -> None:
    """MLflow's whole schema (every migration step) and its Default experiment in the new SQLite file `path`."""
    from mlflow.tracking import MlflowClient

    MlflowClient(f"sqlite:///{path.resolve()}").search_experiments(max_results=1)


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

    lock = FileLock(str(path) + ".lock", timeout=120)
    try:
        with lock:
            if not path.exists():
                for old in path.parent.glob(f".{path.name}.creating-*"):  # left by a killed creation
                    old.unlink(missing_ok=True)
                scratch = path.with_name(f".{path.name}.creating-{os.getpid()}")
                build_schema(scratch)
                os.replace(scratch, path)
                # Waiters find the store there once they hold the lock and skip creating it; later
                # processes never take the lock. So it can go, leaving no clutter beside mlruns.db.
                Path(lock.lock_file).unlink(missing_ok=True)
            yield
    except Timeout:
        raise StoreError(f"Tracking store {uri}: another process has held {lock.lock_file} for 120 s while creating "
                         "the store. Fix: wait for it, or delete the lock file if no medtl process is running.") from None


def lost_store(exc: BaseException, uri: str) -> str | None:
    """The one message for a tracking store (`uri`) that stopped answering while a command ran (a server that died,
    a database gone), or None when `exc` (or what it chains to) is not that."""
    import requests
    from mlflow.exceptions import MlflowException

    seen = exc
    while seen is not None:
        text = str(seen)
        if isinstance(seen, requests.RequestException) or (
                isinstance(seen, MlflowException) and "API request to" in text and "failed" in text):
            break
        if type(seen).__name__ == "OperationalError" and "sqlite" not in uri:  # SQLAlchemy: the database went away
            break
        seen = seen.__cause__ or seen.__context__
    else:
        return None
    first = next((line for line in str(seen).splitlines() if line.strip()), type(seen).__name__)[:300]
    return (f"The tracking store {shown(uri)} stopped answering while the command ran ({first}). What FINISHED before "
            "is kept there; the run that was going on could not be recorded (the next run marks it KILLED). Fix: "
            "restart the tracking server (or database) and rerun the same command: finished cells are skipped.")

"""A shared MLflow tracking server for a team: PostgreSQL for runs, a served artifact root, 127.0.0.1 by default.

    medtl server --backend-store-uri postgresql+psycopg2://mlflow@db.lab:5432/mlflow     # make server
    medtl benchmark SUITE --tracking-uri http://127.0.0.1:5000                         # suites and studies use it
    medtl tune SUITE --tracking-uri http://127.0.0.1:5000 --storage postgresql+psycopg2://optuna@db.lab/optuna

It runs MLflow's own `mlflow server` (no server of ours): `--serve-artifacts` with
`--artifacts-destination`, so clients upload artifacts through the server and need no shared
filesystem (SLURM workers included). The database is checked before the server starts, so a wrong
URL fails in seconds with the fix instead of a traceback per request. `--auth` turns on MLflow's
basic-auth app (users and per-experiment permissions; `mlflow[auth]` and
MLFLOW_FLASK_SERVER_SECRET_KEY needed). Binding to anything but 127.0.0.1 without `--auth` prints a
warning: put a proxy with TLS and authentication in front (README, "Beyond one machine").
"""

from __future__ import annotations

import importlib.util
import ipaddress
import os
import sys
from dataclasses import dataclass


class ServerError(ValueError):
    """A server that cannot start as asked; the message says what, where and the fix."""


DB_ENV = "MEDTL_SERVER_DB"  # default --backend-store-uri


@dataclass(frozen=True)
class ServerSettings:
    backend_store_uri: str  # runs, params, metrics: PostgreSQL for a team (sqlite only for one machine)
    artifacts_destination: str = "./mlartifacts"  # where the server keeps artifacts it serves
    host: str = "127.0.0.1"  # loopback: nothing outside this machine reaches it unless asked
    port: int = 5000
    workers: int = 4  # uvicorn worker processes
    auth: bool = False  # MLflow's basic-auth app
    allowed_hosts: str | None = None  # Host headers accepted (MLflow >= 3.5 middleware; default localhost + private IPs)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_database(uri: str) -> None:
    """Connect once, within seconds: an unreachable or wrong database fails here with its actual cause (unknown
    kind, missing driver or folder, nothing listening, no answer, refused login, no such database), the URI
    (password hidden) and the fix (tracking.preflight.check_database)."""
    from tracking.preflight import StoreError, check_database as check

    try:
        check(uri, what="The tracking database", source=f"--backend-store-uri / ${DB_ENV}")
    except StoreError as exc:
        raise ServerError(str(exc)) from None


def port_in_use(host: str, port: int) -> bool:
    """Whether (host, port) cannot be bound because something listens there already."""
    import errno
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers do: a port in TIME_WAIT is free
        try:
            s.bind((host, port))
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
    return False


def server_command(settings: ServerSettings) -> list[str]:
    """The `mlflow server` command line for `settings` (after the checks of `check`)."""
    cmd = [sys.executable, "-m", "mlflow", "server",
           "--backend-store-uri", settings.backend_store_uri,
           "--serve-artifacts", "--artifacts-destination", settings.artifacts_destination,
           "--host", settings.host, "--port", str(settings.port), "--workers", str(settings.workers)]
    if settings.auth:
        cmd += ["--app-name", "basic-auth"]
    if settings.allowed_hosts:
        cmd += ["--allowed-hosts", settings.allowed_hosts]
    return cmd


def check(settings: ServerSettings, warn=lambda message: print(message, file=sys.stderr)) -> None:
    """Everything that would make the server fail or be unsafe, before it starts."""
    if not settings.backend_store_uri:
        raise ServerError(f"medtl server needs a database for the runs: --backend-store-uri or ${DB_ENV}. Fix: e.g. "
                          "createdb mlflow && medtl server --backend-store-uri postgresql+psycopg2://$USER@127.0.0.1:5432/mlflow")
    if not 1 <= settings.port <= 65535:
        raise ServerError(f"--port {settings.port} is not a TCP port. Fix: a number in 1-65535, e.g. --port 5000.")
    if settings.workers < 1:
        raise ServerError(f"--workers {settings.workers}: the server needs at least one worker process. Fix: --workers 4.")
    if settings.auth:
        if importlib.util.find_spec("flask_wtf") is None:
            raise ServerError("--auth uses MLflow's basic-auth app, which needs Flask-WTF (not installed). "
                              "Fix: pip install 'mlflow[auth]', or leave out --auth and put an authenticating proxy in front.")
        if not os.environ.get("MLFLOW_FLASK_SERVER_SECRET_KEY"):
            raise ServerError("--auth needs MLFLOW_FLASK_SERVER_SECRET_KEY (CSRF protection of the basic-auth app). "
                              "Fix: export MLFLOW_FLASK_SERVER_SECRET_KEY=$(python -c 'import secrets; print(secrets.token_hex(32))')")
    if settings.backend_store_uri.startswith("sqlite"):
        warn(f"medtl server: {settings.backend_store_uri} is a SQLite file: fine on one machine, but a team's "
             "concurrent writers need PostgreSQL.")
    if not _loopback(settings.host) and not settings.auth:
        warn(f"medtl server: listening on {settings.host} without --auth: anyone who reaches port {settings.port} can "
             "read, change and delete every run. Put an authenticating proxy (TLS + basic auth or SSO) in front, or use --auth.")
    if port_in_use(settings.host, settings.port):
        # Checked here: `mlflow server` would print its URL, fail to bind, and still exit 0.
        raise ServerError(f"--port {settings.port}: something already listens on {settings.host}:{settings.port} (another "
                          f"server, or an earlier `medtl server`). Fix: --port {settings.port + 1}, or stop what holds it "
                          f"(`ss -ltnp 'sport = :{settings.port}'` shows which process).")
    check_database(settings.backend_store_uri)


def serve(settings: ServerSettings) -> None:
    """Check, then replace this process by `mlflow server` (signals reach it directly)."""
    check(settings)
    cmd = server_command(settings)
    print(f"medtl server: MLflow on http://{settings.host}:{settings.port} (runs in "
          f"{_hidden(settings.backend_store_uri)}, artifacts in {settings.artifacts_destination}); clients: "
          f"--tracking-uri http://{settings.host}:{settings.port}", flush=True)
    os.execv(cmd[0], cmd)


def _hidden(uri: str) -> str:
    import sqlalchemy

    try:
        return sqlalchemy.engine.make_url(uri).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - only for the message
        return uri

"""Real servers for the tests that need them, started on 127.0.0.1 from the distribution's packages.

    from tests.servers import postgres   # a session fixture: the URL of a fresh PostgreSQL database

PostgreSQL comes from Debian's `postgresql` package (`make install` does not install system
packages; `.ci/run` installs it when it is missing and it can). A test that needs a server it
cannot start is skipped with the reason, never passed.
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

PG_BIN_DIRS = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)  # Debian keeps initdb here


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pg_tool(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    return next((str(d / name) for d in PG_BIN_DIRS if (d / name).exists()), None)


def _as_server_user(cmd: list[str]) -> list[str]:
    # PostgreSQL refuses to run as root; Debian's package creates the `postgres` user for it.
    if os.geteuid() == 0:
        runuser = shutil.which("runuser")
        if runuser is None:
            pytest.skip("PostgreSQL cannot run as root and `runuser` is missing to switch to the postgres user")
        return [runuser, "-u", "postgres", "--", *cmd]
    return cmd


def start_postgres(folder: Path) -> tuple[str, subprocess.Popen | None, callable]:
    """initdb + pg_ctl start in `folder`; returns (URL, None, stop). Skips when PostgreSQL is not installed."""
    initdb, pg_ctl = pg_tool("initdb"), pg_tool("pg_ctl")
    if initdb is None or pg_ctl is None:
        pytest.skip("PostgreSQL is not installed (Debian package `postgresql`; .ci/run installs it where it can)")
    data = folder / "pgdata"
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
    user = "postgres" if os.geteuid() == 0 else getpass.getuser()
    port = free_port()
    run = lambda cmd, **kw: subprocess.run(_as_server_user(cmd), capture_output=True, text=True, timeout=120, **kw)  # noqa: E731
    done = run([initdb, "-D", str(data), "-A", "trust", "-U", user, "--no-sync"])
    if done.returncode != 0:
        pytest.skip(f"initdb failed, so no PostgreSQL server could start: {done.stderr.strip()[-300:]}")
    # Socket in the data folder (not /var/run/postgresql, which may not exist or be writable).
    options = f"-h 127.0.0.1 -p {port} -k {data} -c fsync=off -c max_connections=200"
    done = run([pg_ctl, "-D", str(data), "-o", options, "-l", str(folder / "server.log"), "-w", "-t", "60", "start"])
    if done.returncode != 0:
        log = (folder / "server.log").read_text() if (folder / "server.log").exists() else ""
        pytest.skip(f"pg_ctl could not start PostgreSQL on 127.0.0.1:{port}: {done.stderr.strip()[-200:]} {log[-300:]}")

    def stop() -> None:
        run([pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"])

    deadline = time.time() + 30
    createdb = pg_tool("createdb") or "createdb"
    while True:
        made = run([createdb, "-h", "127.0.0.1", "-p", str(port), "-U", user, "medtl"])
        if made.returncode == 0:
            break
        if time.time() > deadline:
            stop()
            pytest.skip(f"PostgreSQL started but createdb failed: {made.stderr.strip()[-300:]}")
        time.sleep(0.5)
    return f"postgresql+psycopg2://{user}@127.0.0.1:{port}/medtl", None, stop


@pytest.fixture(scope="session")
def postgres():
    """URL of an empty database `medtl` on a PostgreSQL server started for this test session."""
    # Not under pytest's basetemp: that is private to this user (0700), and the server runs as `postgres`.
    folder = Path(tempfile.mkdtemp(prefix="medtl-pg-"))
    folder.chmod(0o755)
    url, _, stop = start_postgres(folder / "server")
    try:
        yield url
    finally:
        stop()
        shutil.rmtree(folder, ignore_errors=True)

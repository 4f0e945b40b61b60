"""The fault table, continued: tune, launchers, server, report, throughput and their services (issue 21).

    PYTHONPATH=. .venv/bin/python -m pytest -q -p no:cacheprovider tests/benchmark/test_faults_surfaces.py

Same standard as tests/benchmark/test_faults.py: every row asserts the exit code, that the message names
the thing, the place and the fix, no traceback, nothing recorded FINISHED, and (where a service is
involved) that the command gave up within its bound. argparse refuses out-of-range numbers with
SystemExit(2), so rows run `main` and take either a return code or that exit. None of these rows trains.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

from benchmark.cli import main
from tests.benchmark.faults import fake_command, runs, silent_listener, suite

SERVICE_BOUND_S = 20.0  # a service that never answers: the command gives up within this (CONNECT_TIMEOUT_S 5 + slack)


@dataclass(frozen=True)
class Row:
    id: str  # the kind of bad input or fault
    build: Callable  # (tmp_path, monkeypatch) -> (argv, [fragments the message must contain])
    code: int  # expected exit code
    bound_s: float | None = None  # the command must end within this many seconds (a service is involved)
    absent: tuple = ()  # text that must not appear (a password)


def _argv(*argv: str, code: int = 2, bound_s: float | None = None, absent: tuple = (), env: dict | None = None,
          fragments: tuple = ()) -> Callable:
    """A build step: the suite file is {suite}, {tmp} the test's folder; `env` is set first."""
    def build(tmp, mp):
        for key, value in (env or {}).items():
            mp.setenv(key, value.format(tmp=tmp))
        path = suite(tmp)
        return ([a.format(suite=path, tmp=tmp) for a in argv], [f.format(suite=path, tmp=tmp) for f in fragments])
    return build


def _number(id: str, *argv: str, fragments: tuple) -> Row:
    return Row(id, _argv(*argv, fragments=("out of range", "valid:", "Fix:", *fragments)), 2)


def _file(tmp: Path) -> Path:
    (tmp / "afile").write_text("not a folder")
    return tmp / "afile"


def _under_file(command: list[str], flag: str) -> Row:
    def build(tmp, mp):
        under = _file(tmp) / "out"
        argv = [a.format(suite=suite(tmp), tmp=tmp) for a in command] + [flag, str(under)]
        return argv, [flag, str(under), f"lies under {tmp / 'afile'}, which is a file", "Fix:"]
    return Row(f"{command[0]} {flag} under a file", build, 2)


def _read_only(command: list[str], flag: str) -> Row:
    def build(tmp, mp):
        import benchmark.run.preflight as preflight

        # Tests run as root, whom chmod does not stop: the read-only case goes through the one predicate.
        mp.setattr(preflight, "writable_folder", lambda folder: Path(folder) != tmp / "ro")
        (tmp / "ro").mkdir()
        argv = [a.format(suite=suite(tmp), tmp=tmp) for a in command] + [flag, str(tmp / "ro" / "report")]
        return argv, [flag, f"folder {tmp / 'ro'} is not writable", "Fix: pass a folder you can write to"]
    return Row(f"{' '.join(a for a in command if a != '{suite}')} {flag} in a read-only folder", build, 2)


def _no_gpu(command: str) -> Row:
    def build(tmp, mp):
        import torch

        mp.setattr(torch.cuda, "is_available", lambda: False)  # the same on a machine that has one
        return [command, str(suite(tmp)), "--accelerator", "gpu"], ["--accelerator gpu", "no CUDA GPU", "Fix: --accelerator cpu"]
    return Row(f"{command} --accelerator gpu without a GPU", build, 2)


def _silent(id: str, argv: list[str], fragments: list[str], env: dict | None = None) -> Row:
    """A service address that accepts connections and never answers (`{port}`): bounded, password hidden."""
    def build(tmp, mp):
        port = mp.silent_port
        for key, value in (env or {}).items():
            mp.setenv(key, value.format(port=port))
        path = suite(tmp)
        return ([a.format(suite=path, port=port) for a in argv], [f.format(port=port) for f in fragments])
    return Row(id, build, 2, bound_s=SERVICE_BOUND_S, absent=("s3cret",))


def _with_git(folder: Path) -> Path:
    """`git` beside the fake cluster tools (the run's tags ask it for the commit); the folder."""
    git = shutil.which("git")
    if git and not (folder / "git").exists():
        (folder / "git").symlink_to(git)
    return folder


def _slurm_controller_down(tmp, mp):
    bin_dir = tmp / "bin"
    fake_command(bin_dir, "sbatch", "sbatch: error: Batch job submission failed: Unable to contact slurm controller "
                                    "(connect failure)")
    fake_command(bin_dir, "srun", "srun: error: Unable to contact slurm controller (connect failure)")
    mp.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    return (["benchmark", str(suite(tmp)), "--launcher", "slurm", "--accelerator", "cpu", "--jobs-folder", str(tmp / "jobs")],
            ["--launcher slurm", "controller (slurmctld) does not answer", "Unable to contact slurm controller",
             "Fix: check that it runs (`scontrol ping`"])


def _busy_port(tmp, mp):
    import socket

    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    mp.busy = holder  # closed when the test ends (monkeypatch undo does not close it; the test does)
    port = holder.getsockname()[1]
    return (["server", "--backend-store-uri", f"sqlite:///{tmp / 'mlflow.db'}", "--port", str(port)],
            [f"--port {port}", f"something already listens on 127.0.0.1:{port}", f"Fix: --port {port + 1}"])


PG = "postgresql+psycopg2://medtl:s3cret@127.0.0.1:{port}/db"

TABLE: list[Row] = [
    # --- numbers that mean "unset" or nonsense: refused with the valid range, exit 2 ---
    _number("tune --n-trials 0", "tune", "{suite}", "--n-trials", "0", fragments=("--n-trials", ">= 1")),
    _number("tune --n-trials -3", "tune", "{suite}", "--n-trials", "-3", fragments=("--n-trials",)),
    _number("tune --workers 0", "tune", "{suite}", "--workers", "0", fragments=("--workers", "--workers 2")),
    _number("tune --timeout -1", "tune", "{suite}", "--timeout", "-1", fragments=("--timeout", "> 0")),
    _number("tune --timeout 0", "tune", "{suite}", "--timeout", "0", fragments=("--timeout", "> 0")),
    _number("tune --seed -1", "tune", "{suite}", "--seed", "-1", fragments=("--seed",)),
    Row("tune --n-trials ten", _argv("tune", "{suite}", "--n-trials", "ten",
                                     fragments=("--n-trials", "'ten' is not a whole number", "Fix:")), 2),
    _number("benchmark --workers 0", "benchmark", "{suite}", "--launcher", "local", "--workers", "0", fragments=("--workers",)),
    _number("benchmark --timeout-min 0", "benchmark", "{suite}", "--launcher", "local", "--timeout-min", "0",
            fragments=("--timeout-min",)),
    _number("benchmark --cpus-per-cell 0", "benchmark", "{suite}", "--launcher", "slurm", "--cpus-per-cell", "0",
            fragments=("--cpus-per-cell",)),
    _number("throughput --batch-size 0", "throughput", "--batch-size", "0", fragments=("--batch-size",)),
    _number("throughput --batch-sizes 8,-1", "throughput", "--batch-sizes", "8,-1", fragments=("--batch-sizes",)),
    _number("throughput --batches 0", "throughput", "--batches", "0", fragments=("--batches",)),
    _number("throughput --warmup -1", "throughput", "--warmup", "-1", fragments=("--warmup", ">= 0")),
    _number("throughput --image-size 0", "throughput", "--image-size", "0", fragments=("--image-size",)),
    _number("server --port 70000", "server", "--port", "70000", fragments=("--port", "<= 65535")),
    _number("server --workers 0", "server", "--workers", "0", fragments=("--workers", "--workers 4")),
    # --- the Optuna storage: where the URL came from, the actual cause ---
    Row("tune --storage with an unknown dialect", _argv("tune", "{suite}", "--storage", "foo://x/y", fragments=(
        "Optuna storage foo://x/y (from --storage)", "unknown database kind 'foo'", "Fix: correct --storage")), 2),
    Row("MEDTL_OPTUNA_STORAGE with an unknown dialect", _argv("tune", "{suite}", env={"MEDTL_OPTUNA_STORAGE": "foo://x/y"},
        fragments=("MEDTL_OPTUNA_STORAGE='foo://x/y'", "unknown database dialect 'foo'", "Fix: export MEDTL_OPTUNA_STORAGE=")), 2),
    Row("tune --storage sqlite in a missing folder", _argv("tune", "{suite}", "--storage", "sqlite:///{tmp}/nodir/optuna.db",
        fragments=("folder {tmp}/nodir does not exist", "Fix: mkdir -p {tmp}/nodir")), 2),
    Row("tune --storage journal in a missing folder", _argv("tune", "{suite}", "--storage", "{tmp}/nodir/journal.log",
        fragments=("Optuna journal file", "folder {tmp}/nodir does not exist", "Fix: mkdir -p")), 2),
    Row("tune --storage mysql without its driver", _argv("tune", "{suite}", "--storage", "mysql://u:s3cret@127.0.0.1/db",
        fragments=("mysql://u:***@127.0.0.1/db", "driver 'MySQLdb'", "not installed", "Fix: pip install mysqlclient"),
        absent=("s3cret",)), 2, absent=("s3cret",)),
    Row("benchmark with MEDTL_OPTUNA_STORAGE in a missing folder (hparams_from: optuna)",
        lambda tmp, mp: (mp.setenv("MEDTL_OPTUNA_STORAGE", f"sqlite:///{tmp}/nodir/o.db") or
                         ["benchmark", str(suite(tmp, hparams_from="optuna"))],
                         ["MEDTL_OPTUNA_STORAGE=", f"{tmp}/nodir does not exist", "mkdir -p", "Fix:"]), 2),
    # --- the server's database and port: the actual cause ---
    Row("server: sqlite backend in a missing folder", _argv("server", "--backend-store-uri", "sqlite:///{tmp}/nodir/m.db",
        fragments=("folder {tmp}/nodir does not exist", "Fix: mkdir -p")), 2),
    Row("server: mysql backend without its driver", _argv("server", "--backend-store-uri", "mysql+pymysql://u@127.0.0.1/m",
        fragments=("driver 'pymysql'", "Fix: pip install PyMySQL")), 2),
    Row("server: unknown dialect", _argv("server", "--backend-store-uri", "postgress://u@h/db",
        fragments=("unknown database kind 'postgress'", "Fix: correct --backend-store-uri")), 2),
    Row("server on a busy port", _busy_port, 2),
    # --- accelerator, before the first cell ---
    _no_gpu("benchmark"),
    _no_gpu("tune"),
    Row("benchmark --accelerator gppu", _argv("benchmark", "{suite}", "--accelerator", "gppu",
        fragments=("--accelerator 'gppu'", "Valid: auto, cpu, gpu", "Fix: --accelerator auto")), 2),
    # --- output locations, before the first cell ---
    _under_file(["benchmark", "{suite}"], "--report-dir"),
    _under_file(["benchmark", "{suite}", "--launcher", "local"], "--jobs-folder"),
    _under_file(["report", "{suite}"], "--out"),
    _under_file(["throughput", "--backbones", "smallcnn"], "--out-dir"),
    _read_only(["benchmark", "{suite}"], "--report-dir"),
    _read_only(["benchmark", "{suite}", "--launcher", "local", "--accelerator", "cpu"], "--report-dir"),
    Row("benchmark whose default reports/ is a file", lambda tmp, mp: (
        (tmp / "reports").write_text("x") and ["benchmark", str(suite(tmp))],
        ["--report-dir reports/tiny", f"lies under {tmp / 'reports'}, which is a file", "Fix:"]), 2),
    # --- launchers ---
    Row("slurm without a controller", _slurm_controller_down, 2),
    # PATH holds only the fake sbatch (and git, for the run's tags): CI installs SLURM, whose srun is in /usr/bin.
    Row("slurm: sbatch without srun", lambda tmp, mp: (
        fake_command(tmp / "bin", "sbatch", "unused") and _with_git(tmp / "bin") and mp.setenv("PATH", str(tmp / "bin")) or
        ["benchmark", str(suite(tmp)), "--launcher", "slurm", "--accelerator", "cpu"],
        ["`sbatch` is on PATH but `srun` is not", "Fix:"]), 2),
    # --- services that accept and never answer: bounded, address shown, password hidden ---
    _silent("tune --storage PostgreSQL that never answers", ["tune", "{suite}", "--storage", PG],
            ["Optuna storage postgresql+psycopg2://medtl:***@127.0.0.1:{port}/db (from --storage)",
             "127.0.0.1:{port} accepts connections but no database answered", "Fix: check the host and port"]),
    _silent("server --backend-store-uri PostgreSQL that never answers", ["server", "--backend-store-uri", PG],
            ["postgresql+psycopg2://medtl:***@127.0.0.1:{port}/db", "no database answered", "Fix:"]),
    _silent("benchmark on an MLflow server that never answers", ["benchmark", "{suite}"],
            ["Tracking server http://127.0.0.1:{port}", "does not answer", "Fix: start it"],
            env={"MLFLOW_TRACKING_URI": "http://127.0.0.1:{port}"}),
    _silent("benchmark on a PostgreSQL tracking store that never answers", ["benchmark", "{suite}", "--tracking-uri", PG],
            ["Tracking store postgresql+psycopg2://medtl:***@127.0.0.1:{port}/db", "no database answered", "Fix:"]),
    _silent("report on an MLflow server that never answers", ["report", "{suite}"],
            ["Tracking server http://127.0.0.1:{port}", "does not answer", "Fix:"],
            env={"MLFLOW_TRACKING_URI": "http://127.0.0.1:{port}"}),
]


def test_the_table_has_a_row_per_surface():
    ids = [r.id for r in TABLE]
    assert len(set(ids)) == len(ids) >= 40
    for surface in ("tune", "benchmark", "server", "report", "throughput", "slurm", "MEDTL_OPTUNA_STORAGE"):
        assert any(surface in i for i in ids), surface


@pytest.mark.parametrize("row", TABLE, ids=[r.id for r in TABLE])
def test_fault(row: Row, tmp_path: Path, mlflow_uri: str, monkeypatch, capsys):
    monkeypatch.delenv("MEDTL_OPTUNA_STORAGE", raising=False)
    monkeypatch.delenv("MEDTL_SERVER_DB", raising=False)
    with silent_listener() as port:
        monkeypatch.silent_port = port
        argv, fragments = row.build(tmp_path, monkeypatch)
        started = time.monotonic()
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse: usage and "error: argument ..."
            code = exc.code
        finally:
            if hasattr(monkeypatch, "busy"):
                monkeypatch.busy.close()
        seconds = time.monotonic() - started
    out, err = capsys.readouterr()
    text = out + err
    assert code == row.code, text[-3000:]
    missing = [f for f in fragments if f not in text]
    assert not missing, f"message lacks {missing}:\n{text[-3000:]}"
    assert "Traceback" not in text
    assert not [a for a in row.absent if a in text], "a password was printed"
    if row.bound_s is not None:
        assert seconds < row.bound_s, f"gave up only after {seconds:.1f} s"
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    for experiment in ("medtl-tiny", "medtl-tiny-tuning"):
        made = runs(uri, experiment)
        assert not [r for r in made if r.info.status in ("FINISHED", "RUNNING")], [r.info.status for r in made]
        if "slurm" not in row.id:  # sbatch's refusal is recorded on the launch's suite run (FAILED)
            assert made == [], "bad input must not create any MLflow run"
    assert not (tmp_path / "reports" / "tiny").exists()
    assert not (tmp_path / "optuna.db").exists() or code != 2 or "storage" not in row.id


def test_the_optuna_storage_of_a_worker_gives_up_on_a_silent_server_within_its_bound():
    """Past the command's check, a worker opens the storage itself (tracking.studies.open_storage): bounded too."""
    import sqlalchemy

    from tracking.studies import open_storage

    with silent_listener() as port:
        started = time.monotonic()
        with pytest.raises(sqlalchemy.exc.OperationalError, match="timeout expired"):
            open_storage.__wrapped__(PG.format(port=port))
        assert time.monotonic() - started < SERVICE_BOUND_S

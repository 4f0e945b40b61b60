"""Every environment variable medtl reads, in one table: name, type, default and meaning, checked on read.

    from tracking import settings
    settings.read("MEDTL_LEASE_SECONDS")    # 300.0, or the checked value of $MEDTL_LEASE_SECONDS
    settings.check_all()                    # a command's first line: a bad value stops it, naming the variable

A value that does not parse raises `SettingError` naming the variable, the value, what is valid and the
fix, when it is read (never at import) or, better, when a command starts (`check_all`). An empty
variable counts as unset, as the code that read `os.environ.get(NAME) or default` always treated it.
This module imports no project package, so tasks/, tracking/ and benchmark/ all read through it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse


class SettingError(ValueError):
    """Environment variable(s) with a value medtl cannot use; the message names each and the fix."""

    def __init__(self, message: str, names: tuple[str, ...]) -> None:
        self.names = names  # the offending variables
        super().__init__(message)


@dataclass(frozen=True)
class Setting:
    """One environment variable medtl reads."""

    name: str  # the variable, e.g. MEDTL_LEASE_SECONDS
    parse: Callable[[str], Any]  # text -> value; raises ValueError saying what is wrong with the text
    default: Any  # the value when the variable is unset or empty
    meaning: str  # one line: what it changes (printed in errors and `describe`)
    valid: str  # what a valid value looks like, for the message
    example: str  # a valid value, for the fix
    secret: bool = False  # the value may hold a password: errors show it with the password hidden


SETTINGS: dict[str, Setting] = {}


def register_setting(name: str, *, parse: Callable[[str], Any], default: Any, meaning: str, valid: str,
                     example: str, secret: bool = False) -> Setting:
    """Add `name` to the table (at the definition site, once)."""
    if name in SETTINGS:
        raise ValueError(f"environment variable {name} is registered twice")
    SETTINGS[name] = Setting(name, parse, default, meaning, valid, example, secret)
    return SETTINGS[name]


def list_settings() -> list[str]:
    return sorted(SETTINGS)


def hide_password(text: str) -> str:
    """`scheme://user:secret@host` -> `scheme://user:***@host`, for messages."""
    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", text)


def _problem(setting: Setting, raw: str, why: str) -> str:
    shown = hide_password(raw) if setting.secret else raw
    return (f"{setting.name}={shown!r} ({setting.meaning}): {why}. Valid: {setting.valid}. Fix: export "
            f"{setting.name}={setting.example} (or `unset {setting.name}` for the default, {setting.default!r})")


def read(name: str, environ: Mapping[str, str] | None = None) -> Any:
    """The checked value of environment variable `name` (its default when unset or empty); SettingError if bad."""
    if name not in SETTINGS:
        raise KeyError(f"{name} is not a registered environment variable; register it in tracking/settings.py "
                       f"(known: {', '.join(list_settings())})")
    setting = SETTINGS[name]
    raw = (os.environ if environ is None else environ).get(name, "").strip()
    if not raw:
        return setting.default
    try:
        return setting.parse(raw)
    except ValueError as exc:
        raise SettingError(f"Environment variable {_problem(setting, raw, str(exc))}.", (name,)) from None


def check_all(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Check every registered variable that is set; {name: value} of those, or one SettingError naming every bad one."""
    environ = os.environ if environ is None else environ
    values, problems, names = {}, [], []
    for name in list_settings():
        if not environ.get(name, "").strip():
            continue
        try:
            values[name] = read(name, environ)
        except SettingError as exc:
            problems.append(str(exc).removeprefix("Environment variable ").rstrip("."))
            names.append(name)
    if problems:
        lines = "\n  ".join(problems)
        raise SettingError(f"{len(problems)} environment variable(s) have a value medtl cannot use:\n  {lines}.",
                           tuple(names))
    return values


# --- value types --------------------------------------------------------------------------------


def number(kind: type, *, above: float | None = None, at_least: float | None = None) -> Callable[[str], Any]:
    """A parser for an int or float with a lower bound."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise ValueError(f"not {'an integer' if kind is int else 'a number'}") from None
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError("not a finite number")
        if above is not None and not value > above:
            raise ValueError(f"must be greater than {above:g}")
        if at_least is not None and not value >= at_least:
            raise ValueError(f"must be at least {at_least:g}")
        return value
    return parse


def folder(text: str) -> Path:
    """A folder path; it may not exist yet (it is created on use), but it must not be a file."""
    path = Path(text).expanduser()
    if path.exists() and not path.is_dir():
        raise ValueError(f"{path} is a file, not a folder")
    return path


DB_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql", "oracle")  # what SQLAlchemy (Optuna, MLflow) ships


def database_url(text: str, *, sqlite_folder: bool = True) -> str:
    """A SQLAlchemy URL whose dialect exists, whose driver is installed and (SQLite, unless told not to check
    `sqlite_folder`) whose folder exists."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        url = make_url(text)
    except ArgumentError:
        raise ValueError("not a database URL (dialect[+driver]://user:password@host[:port]/database)") from None
    try:
        dialect = url.get_dialect()
    except NoSuchModuleError:
        hint = "; 'postgres' is spelt 'postgresql'" if url.get_backend_name() == "postgres" else ""
        raise ValueError(f"unknown database dialect {url.drivername!r} (known: {', '.join(DB_SCHEMES)}{hint})") from None
    try:
        dialect.import_dbapi()
    except ImportError as exc:
        raise ValueError(f"the Python driver of {url.drivername!r} is not installed ({exc}); install it "
                         f"(e.g. pip install psycopg2-binary or pymysql) or pick an installed one") from None
    if sqlite_folder and url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        parent = Path(url.database).expanduser().parent
        if not parent.is_dir():
            raise ValueError(f"the SQLite file's folder {parent} does not exist; create it (mkdir -p {parent})")
    return text


def storage_url(text: str) -> str:
    """An Optuna storage: a database URL, or a journal file path (no '://')."""
    return database_url(text) if "://" in text else text


def tracking_url(text: str) -> str:
    """An MLflow tracking URI: a local path, file://, http(s)://, databricks, or a database URL."""
    if "://" not in text and not text.startswith(("databricks", "sqlite:")):
        return text  # a local folder (MLflow's file store)
    scheme = urlparse(text).scheme
    if scheme in ("http", "https", "file") or scheme.startswith("databricks"):
        return text
    if scheme.partition("+")[0] not in DB_SCHEMES:
        raise ValueError(f"unknown scheme {scheme!r} (known: http, https, file, databricks, {', '.join(DB_SCHEMES)})")
    return database_url(text, sqlite_folder=False)  # tracking.preflight checks the store's folder, with its own fix


def hold_trial(text: str) -> tuple[int, Path]:
    """Tests only: `<trial number>:<marker file>`."""
    number_text, sep, marker = text.partition(":")
    if not sep or not marker or not number_text.isdigit():
        raise ValueError("not '<trial number>:<marker file>'")
    return int(number_text), Path(marker)


# --- the table: every variable medtl (and its tests) reads ----------------------------------------

register_setting("MEDTL_DATA", parse=folder, default=None, example="~/data",
                 meaning="default --data-root: the folder that holds the datasets", valid="a folder path")
register_setting("MEDTL_CACHE", parse=folder, default=None, example="~/.cache/medtl",
                 meaning="where cached features and decoded video frames go (default .medtl_cache / <root>/.medtl_frames)",
                 valid="a folder path (created on use)")
register_setting("MEDTL_TENSOR_STORE_GB", parse=number(float, at_least=0), default=8.0, example="16",
                 meaning="largest uint8 tensor store (GiB) the `auto` data pipeline builds",
                 valid="a number of GiB >= 0")
register_setting("MEDTL_DOWNLOAD_TIMEOUT", parse=number(float, above=0), default=20.0, example="60",
                 meaning="seconds a download waits to connect or for the next bytes before giving up",
                 valid="a number of seconds > 0")
register_setting("MEDTL_LEASE_SECONDS", parse=number(float, above=0), default=300.0, example="600",
                 meaning="seconds a cell claim lives without a heartbeat before another worker may take it",
                 valid="a number of seconds > 0")
register_setting("MEDTL_OPTUNA_STORAGE", parse=storage_url, default=None, secret=True,
                 example="postgresql+psycopg2://optuna@db.lab/optuna",
                 meaning="default Optuna storage of `medtl tune` and `hparams_from: optuna`",
                 valid="a database URL (sqlite:///optuna.db, postgresql://...) or a journal file path")
register_setting("MEDTL_SERVER_DB", parse=database_url, default=None, secret=True,
                 example="postgresql+psycopg2://mlflow@db.lab/mlflow",
                 meaning="default --backend-store-uri of `medtl server`",
                 valid="a database URL with an installed driver (postgresql://..., sqlite:///mlflow.db)")
register_setting("MLFLOW_TRACKING_URI", parse=tracking_url, default=None, secret=True,
                 example="http://127.0.0.1:5000", meaning="the MLflow store runs go to (default sqlite:///mlruns.db)",
                 valid="http(s)://host:port, a database URL (sqlite:///mlruns.db), file:// or a folder")
register_setting("MEDTL_FIXTURES", parse=folder, default=None, example="../shared/data",
                 meaning="tests only: the folder of real data fixtures", valid="a folder path")
register_setting("MEDTL_TEST_HOLD_TRIAL", parse=hold_trial, default=None, example="1:/tmp/held",
                 meaning="tests only: make that Optuna trial write the marker file and wait to be killed",
                 valid="<trial number>:<marker file>")
register_setting("MEDTL_TEST_HOLD_EPOCH", parse=hold_trial, default=None, example="2:/tmp/held",
                 meaning="tests only: make a cell write the marker file after that epoch and wait to be killed",
                 valid="<epoch>:<marker file>")

"""Bad input and faults: each row of the table is one kind, run through the `medtl` CLI in-process.

    PYTHONPATH=. .venv/bin/python -m pytest -q -n 0 tests/benchmark/test_faults.py

Every row asserts the exit code (2 bad input, 1 failed cells or findings, 130/143 interrupted),
that the error text names the thing, the place and the fix, and that nothing that looks like a
result came out: no FINISHED fine-tuning run, no leaderboard row, no report file with rows.
Signals need a real process (`test_signals.py`); the SIGKILL and two-worker tests live in
`test_kill_resume.py`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pytest

from benchmark.cli import main
from tests.benchmark.faults import class_folders, closed_port, csv_dataset, dead_pid, npz, runs, suite


@dataclass(frozen=True)
class Row:
    id: str  # the kind of bad input or fault
    build: Callable  # (tmp_path, monkeypatch) -> (argv, [fragments the error must contain])
    code: int  # expected exit code


def _suite_row(id: str, fragments: list[str], text: str | None = None, **changes) -> Row:
    def build(tmp, mp):
        path = suite(tmp, text, **changes)
        return ["benchmark", str(path)], [str(path), *fragments]
    return Row(id, build, 2)


def _hp(**values):
    return {**{"epochs": 1, "batch_size": 16}, **values}


def _pre(hparams=None, **extra):
    block = {"dataset": "gen-general", "options": {"size": 32, "per_class": 8}, **extra}
    if hparams is not None:
        block["hparams"] = hparams
    return {"none": {"weights": "scratch"}, "gen": {"pretrain": block}}


def _data_row(id: str, make: Callable, fragments: list[str], **changes) -> Row:
    """A suite whose target is a dataset `make(data_root)` writes; fragments may use {root}."""
    def build(tmp, mp):
        data = tmp / "data"
        dataset, path, options = make(data)
        spec = suite(tmp, **{"target": {"dataset": dataset, "path": path, **({"options": options} if options else {})},
                             **changes})
        return (["benchmark", str(spec), "--data-root", str(data)], [f.format(root=data) for f in fragments])
    return Row(id, build, 2)


def _two_class(folder: str) -> dict[str, int]:
    return {f"{folder}/a": 3, f"{folder}/b": 3}


def _npz_row(id: str, command: str, arrays: dict, code: int, fragments: list[str]) -> Row:
    def build(tmp, mp):
        path = npz(tmp / "breastmnist.npz", **arrays)
        return ["data", command, "medmnist", "--root", str(path)], [str(path), *fragments]
    return Row(id, build, code)


IMAGES = np.zeros((5, 28, 28), np.uint8)
MISMATCH = {"train_images": IMAGES, "train_labels": np.zeros((4, 1), np.int64)}
NO_LABELS = {"train_images": IMAGES}


def _store_row(id: str, prepare: Callable, fragments: list[str], command: str = "benchmark") -> Row:
    def build(tmp, mp):
        extra = prepare(tmp, mp) or []
        return [command, str(suite(tmp)), *extra], [f.format(tmp=tmp) for f in fragments]
    return Row(id, build, 2)


def _http_store(tmp, mp):
    mp.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{closed_port()}")


def _garbage_store(tmp, mp):
    (tmp / "mlruns.db").write_bytes(b"this is not a database\n" * 50)


def _damaged_sqlite(tmp, mp):
    (tmp / "mlruns.db").write_bytes(b"SQLite format 3\x00" + bytes(range(256)) * 16)


def _store_under_a_file(tmp, mp):
    (tmp / "afile").write_text("x")
    mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp / 'afile' / 'mlruns.db'}")


def _read_only_cwd(tmp, mp):
    # Tests run as root here, for whom chmod does not make a folder read-only: the check that a
    # read-only mount or folder fails is exercised through its one predicate.
    import tracking.preflight as preflight

    mp.setattr(preflight, "_writable", lambda folder: False)


def _fresh_folder(tmp, mp):
    return None


def _offline_download(tmp, mp):
    import tasks.data.download as download
    from tasks.data.cards import RemoteFile, Source

    url = f"http://127.0.0.1:{closed_port()}/fake.zip"
    mp.setattr(download, "download_catalogue", lambda: {"fake": Source(folder="fake", files=(RemoteFile(url),))})
    return url


def _download_row() -> Row:
    def build(tmp, mp):
        url = _offline_download(tmp, mp)
        return ["data", "download", "fake", "--root", str(tmp / "dl")], ["Cannot reach 127.0.0.1", url, "Fix:"]
    return Row("data download offline (closed port)", build, 2)


def _failing_cells_row() -> Row:
    def build(tmp, mp):
        path = suite(tmp, sources={"lost": {"weights": f"file:{tmp / 'missing.pt'}"}})
        return ["benchmark", str(path)], ["2 cell(s) FAILED", "missing.pt", "rerun the suite to retry"]
    return Row("cells that fail at run time (missing weights file)", build, 1)


def _stale_run_row() -> Row:
    def build(tmp, mp):
        from mlflow.tracking import MlflowClient

        from tracking.claims import HEARTBEAT_TAG, HOST_TAG, PID_TAG
        from tracking.store import ensure_experiment
        import socket
        import time

        client = MlflowClient(f"sqlite:///{tmp / 'mlruns.db'}")
        exp = ensure_experiment(client, "medtl-tiny")
        pid = dead_pid()
        client.create_run(exp, run_name="left by SIGKILL", tags={
            "medtl.stage": "finetune", HOST_TAG: socket.gethostname(), PID_TAG: str(pid), HEARTBEAT_TAG: str(time.time())})
        path = suite(tmp, sources={"lost": {"weights": f"file:{tmp / 'missing.pt'}"}})
        return ["benchmark", str(path)], ["Marked stale RUNNING run", "left by SIGKILL", f"process {pid}", "is gone"]
    return Row("RUNNING run of a dead process (SIGKILLed suite) found on rerun", build, 1)


TABLE: list[Row] = [
    # --- suite values (file, key path, fix) ---
    _suite_row("epochs 0", ["hparams.epochs", ">= 1", "Fix: set it to"], hparams=_hp(epochs=0)),
    _suite_row("epochs -1", ["hparams.epochs", ">= 1", "Fix:"], hparams=_hp(epochs=-1)),
    _suite_row("epochs 'ten'", ["hparams.epochs", "must be int", "Fix:"], hparams=_hp(epochs="ten")),
    _suite_row("lr 'fast'", ["hparams.lr", "must be float", "Fix:"], hparams=_hp(lr="fast")),
    _suite_row("batch_size 0", ["hparams.batch_size", ">= 2", "Fix:"], hparams=_hp(batch_size=0)),
    _suite_row("dropout above its range", ["hparams.dropout", "between 0.0 and 0.9", "Fix:"], hparams=_hp(dropout=1.5)),
    _suite_row("optimizer not a choice", ["hparams.optimizer", "one of", "adam", "Fix:"], hparams=_hp(optimizer="adamm")),
    _suite_row("unknown hyperparameter", ["hparams", "'learning_rate'", "read"], hparams=_hp(learning_rate=0.1)),
    _suite_row("pretraining epochs 0", ["sources.gen.pretrain.hparams.epochs", ">= 1", "Fix:"],
               sources=_pre(hparams={"epochs": 0})),
    _suite_row("pretraining folds 1", ["sources.gen.pretrain.folds", ">= 2", "Fix:"], sources=_pre(folds=1)),
    _suite_row("fractions [1.5]", ["fractions[0]", "less than or equal to 1", "Fix:", "(0, 1]"], fractions=[1.5]),
    _suite_row("fractions [0]", ["fractions[0]", "greater than 0", "Fix:"], fractions=[0]),
    _suite_row("fractions as a string", ["fractions", "list", "Fix:"], fractions="0.5"),
    _suite_row("duplicated backbone", ["backbones", "'smallcnn' given more than once", "Fix:"], backbones=["smallcnn", "smallcnn"]),
    _suite_row("duplicated seed", ["seeds", "0 given more than once", "Fix:"], seeds=[0, 0]),
    _suite_row("duplicated strategy", ["strategies", "'full' given more than once", "Fix:"], strategies=["full", "full"]),
    _suite_row("duplicated fraction", ["fractions", "given more than once", "Fix:"], fractions=[0.5, 0.5]),
    _suite_row("negative seed", ["seeds[0]", "greater than or equal to 0", "Fix:"], seeds=[-1]),
    _suite_row("source with weights and pretrain", ["sources.none", "both 'weights' and 'pretrain'", "Fix:"],
               sources={"none": {"weights": "scratch", "pretrain": {"dataset": "gen-general"}}}),
    _suite_row("source with neither", ["sources.none", "neither 'weights' nor 'pretrain'", "Fix:"], sources={"none": {}}),
    _suite_row("misspelt source key", ["sources.none.wieghts", "unknown key", "Fix: delete the key or correct its spelling"],
               sources={"none": {"wieghts": "scratch"}}),
    _suite_row("key written twice in one mapping", ["key 'epochs' is written twice", "line", "Fix: delete one"],
               text="name: tiny\ntarget: {dataset: gen-target}\nbackbones: [smallcnn]\nsources: {none: {weights: scratch}}\n"
                    "hparams:\n  epochs: 1\n  epochs: 5\n"),
    _suite_row("suite name with ../", ["name", "'../escape'", "Fix: use letters, digits"], name="../escape"),
    _suite_row("suite name with a separator", ["name", "'a/b'", "Fix:"], name="a/b"),
    _suite_row("folds 1", ["folds", ">= 2", "Fix:", "official"], folds=1),
    _suite_row("folds 'ten'", ["folds", "Fix:", "official"], folds="ten"),
    _suite_row("image_size 0", ["image_size", "greater than or equal to 1", "Fix:"], image_size=0),
    _suite_row("image_size 'big'", ["image_size", "'big'", "Fix:", "native"], image_size="big"),
    _suite_row("devices 0", ["devices", "greater than or equal to 1", "Fix:"], devices=0),
    _suite_row("num_workers -1", ["num_workers", "greater than or equal to 0", "Fix:"], num_workers=-1),
    _suite_row("throughput batch_size 0", ["throughput.batch_size", "Fix:"], throughput={"batch_size": 0}),
    _suite_row("unknown precision", ["precision", "'bf17'", "Fix:", "32-true"], precision="bf17"),
    _suite_row("save_checkpoints 'yes please'", ["save_checkpoints", "Fix: write true or false"], save_checkpoints="yes please"),
    _suite_row("unknown top-level key", ["unknown keys ['epochs']", "Valid keys", "Fix:"], epochs=3),
    _suite_row("missing target", ["target", "Field required", "Fix: add 'target'"], target=None),
    _suite_row("empty backbones", ["backbones", "at least 1", "Fix:"], backbones=[]),
    _suite_row("suite is a list", ["a suite is a YAML mapping", "Fix:"], text="- name: tiny\n"),
    _suite_row("not YAML", ["not valid YAML", "line"], text="name: [unclosed\n"),
    _suite_row("unknown dataset", ["unknown dataset 'gen-targett'", "Valid names"], target={"dataset": "gen-targett"}),
    _suite_row("unknown backbone", ["unknown backbone 'resnet181'"], backbones=["resnet181"]),
    _suite_row("unknown adapter option", ["takes no option 'sise'", "Valid options"], target={"dataset": "gen-target", "options": {"sise": 32}}),
    Row("missing suite file", lambda tmp, mp: (["benchmark", str(tmp / "nope.yaml")], ["nope.yaml", "not found", "benchmark/suites"]), 2),
    # --- layouts: checked before the first cell, naming the suite key ---
    _data_row("split layout with an extra folder",
              lambda d: ("class-folders", "set", class_folders(d / "set", {**_two_class("train"), **_two_class("test"), "extra/a": 2}) and None),
              ["target", "mixes split folders (test, train) with other folders (extra)", "Fix: move extra"]),
    _data_row("CSV split column partly empty",
              lambda d: ("csv", "tab", csv_dataset(d / "tab", [("a0.png", "a", "train"), ("b0.png", "b", "train"), ("a1.png", "a", ""),
                                                               ("b1.png", "b", "test")]) and None),
              ["target", "labels.csv", "empty 'split' while other rows have one", "line 4", "Fix: give every row"], folds="official"),
    _data_row("CSV with a duplicated row",
              lambda d: ("csv", "tab", csv_dataset(d / "tab", [("a0.png", "a", ""), ("b0.png", "b", ""), ("a1.png", "a", ""),
                                                               ("b1.png", "b", ""), ("a0.png", "a", "")]) and None),
              ["target", "labels.csv", "repeat a path", "line 6: a0.png", "Fix: list each image once"]),
    _data_row("labels differing only in case",
              lambda d: ("csv", "tab", csv_dataset(d / "tab", [(f"{c}{i}.png", c, "") for c in ("Cat", "cat", "dog") for i in range(3)]) and None),
              ["target", "differ only in case: Cat / cat", "Fix: rename"]),
    _data_row("single-class dataset",
              lambda d: ("class-folders", "one", class_folders(d / "one", {"only": 6}) and None),
              ["target", "1 class ('only')", "at least 2", "Fix:"]),
    _data_row("class with no training images",
              lambda d: ("class-folders", "set", class_folders(d / "set", {**_two_class("train"), **_two_class("test"), "test/c": 2}) and None),
              ["target", "'c'", "no image in the official training split", "Fix:"], folds="official"),
    _data_row("folds official on a dataset without a split",
              lambda d: ("class-folders", "set", class_folders(d / "set", {"a": 4, "b": 4}) and None),
              ["target", "folds: official", "no official split", "Fix: set folds"], folds="official"),
    Row("--data-root pointing at the dataset itself", lambda tmp, mp: (
        ["benchmark", str(suite(tmp, target={"dataset": "class-folders", "path": "set"})),
         "--data-root", str(class_folders(tmp / "data" / "set", {"a": 4, "b": 4}))],
        ["target.path 'set'", f"{tmp}/data/set/set, which does not exist", f"Fix: pass --data-root {tmp / 'data'} (it holds set)"]), 2),
    _data_row("bad pretraining source layout",
              lambda d: ("class-folders", "set", class_folders(d / "set", {"a": 4, "b": 4}) and class_folders(d / "src", {"x": 4}) and None),
              ["sources.src.pretrain", "1 class ('x')", "Fix:"],
              sources={"none": {"weights": "scratch"}, "src": {"pretrain": {"dataset": "class-folders", "path": "src"}}}),
    # --- the tracking store: seconds, with the URI and the fix ---
    _store_row("unreachable MLFLOW_TRACKING_URI", _http_store, ["Tracking server http://127.0.0.1:", "does not answer", "Fix: start it"]),
    _store_row("garbage mlruns.db", _garbage_store, ["mlruns.db", "not a readable SQLite database", "Fix: move it aside"]),
    _store_row("damaged SQLite mlruns.db", _damaged_sqlite, ["mlruns.db", "not a readable SQLite database", "Fix: move it aside"]),
    _store_row("store folder is a file", _store_under_a_file, ["{tmp}/afile", "not writable", "Fix: run from a folder"]),
    _store_row("read-only working directory", _read_only_cwd, ["{tmp}", "not writable", "Fix: run from a folder"]),
    _store_row("report in an empty folder", _fresh_folder, ["Nothing to report", "{tmp}/mlruns.db", "Fix: run `medtl benchmark"],
               command="report"),
    # --- data commands ---
    _npz_row("npz label/image counts differ: verify", "verify", MISMATCH, 1, ["5 images", "4 labels", "Fix: re-download"]),
    _npz_row("npz label/image counts differ: describe", "describe", MISMATCH, 2, ["5 images", "4 labels", "Fix: re-download"]),
    _npz_row("npz label/image counts differ: audit", "audit", MISMATCH, 2, ["5 images", "4 labels", "Fix: re-download"]),
    _npz_row("npz without labels: verify", "verify", NO_LABELS, 1, ["no 'train_labels' array", "Fix: re-download"]),
    _npz_row("npz without labels: describe", "describe", NO_LABELS, 2, ["no 'train_labels' array", "Fix: re-download"]),
    _npz_row("npz without labels: audit", "audit", NO_LABELS, 2, ["no 'train_labels' array", "Fix: re-download"]),
    Row("single-class folder: verify", lambda tmp, mp: (["data", "verify", "class-folders", "--root", str(class_folders(tmp / "one", {"only": 3}))],
                                                        ["1 class", "at least 2", "fix:"]), 1),
    _download_row(),
    # --- runs that fail or were left behind ---
    _failing_cells_row(),
    _stale_run_row(),
]


def test_the_table_covers_at_least_40_kinds():
    assert len(TABLE) >= 40 and len({r.id for r in TABLE}) == len(TABLE)


@pytest.mark.parametrize("row", TABLE, ids=[r.id for r in TABLE])
def test_fault(row: Row, tmp_path: Path, mlflow_uri: str, monkeypatch, capsys):
    argv, fragments = row.build(tmp_path, monkeypatch)
    code = main(argv)
    out, err = capsys.readouterr()
    text = out + err
    assert code == row.code, text[-3000:]
    missing = [f for f in fragments if f not in text]
    assert not missing, f"error text lacks {missing}:\n{text[-3000:]}"
    assert "Traceback" not in text
    # Nothing that looks like a result: no FINISHED fine-tuning run, no leaderboard row, no report rows.
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    finished = [r for r in runs(uri) if r.info.status == "FINISHED" and r.data.tags.get("medtl.stage") == "finetune"]
    assert finished == []
    if row.code == 2 and argv[0] in ("benchmark", "report"):
        assert runs(uri) == [], "bad input must not create any MLflow run"
        assert not (tmp_path / "reports").exists()
    board = tmp_path / "reports" / "tiny" / "leaderboard.csv"
    assert not board.exists() or not board.read_text().strip() or len(pd.read_csv(board)) == 0
    assert "| none" not in out  # no leaderboard line printed

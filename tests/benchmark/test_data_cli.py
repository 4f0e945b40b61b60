"""`medtl data ...` exit codes and messages, run through `benchmark.data_cli.main`.

    .venv/bin/python -m pytest tests/benchmark/test_data_cli.py -q
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmark.data_cli import add_data_commands, main, parse_option


def make_class_folders(root: Path, counts: dict[str, int]) -> Path:
    rng = np.random.default_rng(0)
    for cls, n in counts.items():
        (root / cls).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 256, size=(16, 16, 3), dtype=np.uint8)).save(root / cls / f"{i}.png")
    return root


@pytest.fixture
def dataset(tmp_path) -> Path:
    return make_class_folders(tmp_path / "ds", {"benign": 2, "malignant": 3})


def test_verify_clean_exits_0(dataset, capsys):
    assert main(["verify", "class-folders", "--root", str(dataset)]) == 0
    out = capsys.readouterr().out
    assert "5 images checked" in out and "OK" in out


def test_verify_corrupt_exits_1_and_names_the_file(dataset, capsys):
    (dataset / "benign" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    assert main(["data", "verify", "class-folders", "--root", str(dataset)]) == 1
    out = capsys.readouterr().out
    assert "broken.png" in out and "FAILED" in out and "fix:" in out


def test_strict_fails_on_duplicates(dataset, capsys):
    shutil.copy(dataset / "benign" / "0.png", dataset / "benign" / "again.png")
    assert main(["verify", "class-folders", "--root", str(dataset)]) == 0
    assert main(["verify", "class-folders", "--root", str(dataset), "--strict"]) == 1
    assert "again.png" in capsys.readouterr().out


def test_verify_missing_root_exits_1(tmp_path, capsys):
    assert main(["verify", "class-folders", "--root", str(tmp_path / "nope")]) == 1
    assert "not a folder" in capsys.readouterr().out


def test_unknown_dataset_exits_2(tmp_path, capsys):
    assert main(["verify", "no-such-set", "--root", str(tmp_path)]) == 2
    assert "Unknown dataset 'no-such-set'" in capsys.readouterr().err


def test_describe_prints_histogram(dataset, capsys):
    assert main(["describe", "class-folders", "--root", str(dataset), "--sample", "2"]) == 0
    out = capsys.readouterr().out
    assert "malignant" in out and "5 images, 2 classes" in out and "of 2 images" in out


def test_manual_download_exits_2_with_instructions(tmp_path, capsys):
    assert main(["download", "chest-xray", "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "data.mendeley.com" in err and "chest_xray/{train,val,test}" in err


def test_download_errors_exit_2(tmp_path, capsys):
    assert main(["download", "medmnist", "--root", str(tmp_path)]) == 2
    assert "--option flag=" in capsys.readouterr().err
    assert main(["download", "nothing-like-it", "--root", str(tmp_path)]) == 2
    assert "No download recipe" in capsys.readouterr().err


def test_bad_option_is_a_usage_error(dataset, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["verify", "class-folders", "--root", str(dataset), "--option", "novalue"])
    assert exit_.value.code == 2 and "key=value" in capsys.readouterr().err


def test_parse_option_types():
    assert parse_option("size=64") == ("size", 64)
    assert parse_option("scale=0.5") == ("scale", 0.5)
    assert parse_option("strict=true") == ("strict", True)
    assert parse_option("flag=breastmnist") == ("flag", "breastmnist")


def test_add_data_commands_contract():
    parser = argparse.ArgumentParser(prog="medtl")
    add_data_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["data", "describe", "gen-target", "--root", ".", "-o", "scale=0.5"])
    assert args.command == "data" and args.data_command == "describe" and callable(args.func)
    assert args.option == [("scale", 0.5)]


def test_audit_finds_the_breastmnist_train_test_copy(shared_data, capsys):
    assert main(["audit", "medmnist", "--root", str(shared_data / "breastmnist" / "breastmnist.npz")]) == 1
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("| test") and "| train" in line)
    assert row.split("|")[4].strip() == "1"  # exactly one pixel-identical train/test pair


def test_audit_of_clean_class_folders_exits_0(tmp_path, capsys):
    root = make_class_folders(tmp_path / "ds", {"a": 6, "b": 6})
    assert main(["audit", "class-folders", "--root", str(root), "--folds", "3"]) == 0
    out = capsys.readouterr().out
    assert "near-duplicate pairs across splits: 0" in out
    assert "images on sides 0, 1, 2," in out and "np.str_" not in out  # plain values, not numpy reprs

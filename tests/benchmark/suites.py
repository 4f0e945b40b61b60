"""Tiny suites for the runner tests, written into a temporary folder."""

from pathlib import Path

import yaml


def write_suite(folder: Path, **overrides) -> Path:
    suite = {
        "name": "tiny",
        "target": {"dataset": "gen-target", "options": {"size": 32}},
        "folds": 2,
        "image_size": 32,
        "backbones": ["smallcnn"],
        "sources": {
            "none": {"weights": "scratch"},
            "gen-general": {"pretrain": {"dataset": "gen-general", "options": {"size": 32, "per_class": 40}, "hparams": {"epochs": 3}}},
        },
        "hparams": {"epochs": 5, "batch_size": 32},
        "throughput": {"batch_size": 8, "warmup": 1, "batches": 2},
    }
    suite.update(overrides)
    path = folder / f"{suite['name']}.yaml"
    path.write_text(yaml.safe_dump(suite))
    return path

"""Bring the finished cells of a store to the current cell identity, so an upgrade reruns nothing.

    medtl migrate [--tracking-uri URI] [--data-root DIR] [--dry-run]

Format 1 (medtl before the architecture change) hashed every entry of the old hyperparameter
table in every cell (also `num_workers` and the `unfreeze_*` entries that only `layerwise` reads)
and only the dataset options a suite wrote; a pretraining cell said `fold 0 of 5` even when it
held out its source's official test split. Format 2 (`benchmark.plan.spec`) hashes what changes a
result. For each FINISHED format-1 cell this recomputes what the cell did in format 2, tags the
run with the new hash (`medtl.spec_hash`; the old one stays as `medtl.spec_hash_v1`, and in the
immutable `spec_hash` param) and logs the converted `spec.json` (the original is kept as
`spec_v1.json`). Fine-tuning cells that name a pretraining cell follow its new hash.

A cell is left alone, with the reason printed, when the conversion cannot be exact: a
pretraining cell whose source data cannot be loaded to learn which split it held out.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from mlflow.tracking import MlflowClient

from benchmark.plan.spec import FORMAT, RunSpec
from tracking import log_json
from tracking.runs import HASH_TAG, search_runs
from tracking.naming import is_medtl_experiment, FORMAT_TAG, STAGE_TAG

V1_HASH_TAG = "medtl.spec_hash_v1"


@dataclass
class Migration:
    migrated: dict[str, str] = field(default_factory=dict)  # old hash -> new hash
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (run id, reason)


def _spec_v1(client: MlflowClient, run_id: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        return json.loads(Path(client.download_artifacts(run_id, "spec.json", tmp)).read_text())


def convert_v1(spec: dict, *, pretrain_hashes: dict[str, str], data_root: Path | None) -> RunSpec:
    """The format-2 spec of what a format-1 cell did; ValueError when that cannot be known."""
    from benchmark.cell.route import load_cell_task
    from benchmark.plan.suite import _task_options
    from tasks.training import get_strategy
    from tasks.training.hparams import UNSET

    d = dict(spec)
    table = get_strategy(d["strategy"]).table
    hparams = {}
    for name, entry in table.items():
        if name in d["hparams"]:
            hparams[name] = d["hparams"][name]
        elif entry.neutral is not UNSET:
            hparams[name] = entry.neutral  # added after format 1: its neutral value is what format 1 did
        else:
            raise ValueError(f"hyperparameter {name!r} has no recorded value and no neutral value")
    d["hparams"] = hparams
    d["task_options"] = _task_options(d["task"], d["task_options"])
    if d["weights"].startswith("cell:"):
        old = d["weights"][len("cell:"):]
        if old not in pretrain_hashes:
            raise ValueError(f"its pretraining cell {old} was not migrated")
        d["weights"] = f"cell:{pretrain_hashes[old]}"
    candidate = RunSpec.build(**{k: v for k, v in d.items() if k not in ("task_options", "hparams")},
                              task_options=d["task_options"], hparams=d["hparams"])
    if d["stage"] == "pretrain":
        # Format 1 held out the official test split whenever the source had one.
        try:
            task = load_cell_task(candidate, data_root)
        except Exception as exc:  # noqa: BLE001 - any failure means we cannot tell which split it used
            raise ValueError(f"its source {d['task']} cannot be loaded to tell which split it held out ({exc}); "
                             "pass --data-root") from exc
        if (task.index["split"] == "test").any():
            d["fold"], d["folds"] = -1, 0
        candidate = RunSpec.build(**{k: v for k, v in d.items() if k not in ("task_options", "hparams")},
                                  task_options=d["task_options"], hparams=d["hparams"])
    return candidate


def migrate_store(client: MlflowClient, *, data_root: Path | None = None, dry_run: bool = False, echo=print) -> Migration:
    """Migrate every medtl experiment of the store (see the module docstring)."""
    outcome = Migration()
    experiments = [e for e in client.search_experiments() if is_medtl_experiment(e.name)]
    for experiment in experiments:
        runs = [r for r in search_runs(client, experiment.experiment_id, "attributes.status = 'FINISHED'")
                if r.data.tags.get(STAGE_TAG) in ("pretrain", "finetune") and FORMAT_TAG not in r.data.tags]
        # Pretraining cells first: fine-tuning cells name them by hash.
        runs.sort(key=lambda r: r.data.tags[STAGE_TAG] != "pretrain")
        for run in runs:
            try:
                old = _spec_v1(client, run.info.run_id)
                new = convert_v1(old, pretrain_hashes=outcome.migrated, data_root=data_root)
            except Exception as exc:  # noqa: BLE001 - reported and left alone
                outcome.skipped.append((run.info.run_id, f"{type(exc).__name__}: {exc}"))
                echo(f"left alone: {experiment.name} run {run.info.run_id}: {exc}")
                continue
            old_hash = run.data.tags[HASH_TAG]
            outcome.migrated[old_hash] = new.hash
            if dry_run:
                continue
            log_json(client, run.info.run_id, old, "spec_v1.json")
            log_json(client, run.info.run_id, new.to_dict(), "spec.json")
            client.set_tag(run.info.run_id, V1_HASH_TAG, old_hash)
            client.set_tag(run.info.run_id, HASH_TAG, new.hash)
            client.set_tag(run.info.run_id, FORMAT_TAG, str(FORMAT))
    verb = "would migrate" if dry_run else "migrated"
    echo(f"{verb} {len(outcome.migrated)} finished cell(s) to spec format {FORMAT}; left alone {len(outcome.skipped)}.")
    return outcome

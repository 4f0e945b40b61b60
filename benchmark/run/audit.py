"""Each suite run audits its own folds for near-duplicate images before its cells run.

    medtl benchmark my-suite.yaml    # -> audit/near_duplicates.csv on the suite's parent run, tag medtl.audit

The target's folds of every planned seed (the `repeats` rounds' too) and each pretraining source
against the target go through benchmark.report.leakage.fold_duplicates (tasks/data/audit.py's pHash
pairs); the report reads the pairs back and re-scores every row without the flagged test images. The
table is cached under the suite's cache folder by what it depends on (datasets, options, folds,
seeds, threshold), so a rerun of a large suite does not hash its images again. An audit that fails
(an image that cannot be read, `imagehash` missing) is reported and never stops the suite.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

import pandas as pd

from benchmark.cell.route import CellContext, load_cell_task
from benchmark.plan.repeats import seed_rounds
from benchmark.plan.suite import Suite
from benchmark.report.leakage import ARTIFACT, TARGET, fold_duplicates
from tasks.data.audit import DEFAULT_THRESHOLD
from tracking.naming import AUDIT_TAG

AUDIT_FORMAT = 1  # bump when the pair table changes meaning: cached tables of an older format are ignored


def _data_key(spec) -> dict:
    return {"task": spec.task, "path": spec.data_path, "options": spec.options}


def audit_suite(suite: Suite, ctx: CellContext, parent_id: str, echo=print) -> int | None:
    """Audit the suite's target folds and sources, log the pairs to `parent_id`; returns the number of pairs (None: no audit)."""
    cells = suite.finetune_cells
    if not cells:
        return None
    try:
        spec = replace(cells[0], extra_train=())  # the target as indexed; extension images are training-only extras
        seeds = seed_rounds(suite)[-1]
        sources = {}
        for pre in (c for c in suite.cells if c.stage == "pretrain"):
            sources.setdefault(pre.source, pre)
        key = json.dumps({"format": AUDIT_FORMAT, "target": _data_key(spec), "folds": spec.folds, "seeds": list(seeds),
                          "threshold": DEFAULT_THRESHOLD, "sources": {n: _data_key(s) for n, s in sorted(sources.items())}},
                         sort_keys=True, default=str)
        path = ctx.cache_dir / "audit" / f"{hashlib.sha256(key.encode()).hexdigest()[:16]}.csv"
        if path.is_file():
            pairs = pd.read_csv(path, dtype={"item_a": str, "item_b": str, "split_a": str, "split_b": str})
        else:
            target = load_cell_task(spec, ctx.data_root, ctx.tasks)
            source_tasks = {name: load_cell_task(pre, ctx.data_root, ctx.tasks) for name, pre in sources.items()}
            pairs = fold_duplicates(target, spec.folds, seeds, sources=source_tasks)
            path.parent.mkdir(parents=True, exist_ok=True)
            pairs.to_csv(path, index=False)
    except Exception as exc:  # noqa: BLE001 - the audit informs the report; it never stops the cells
        echo(f"Leakage audit skipped ({type(exc).__name__}: {exc}); the report will say that no audit ran.")
        return None
    _log_as(ctx.client, parent_id, path)
    inside = int((pairs["scope"] == TARGET).sum())
    ctx.client.set_tag(parent_id, AUDIT_TAG, f"{len(pairs)} near-duplicate pairs")
    echo(f"Leakage audit: {inside} near-duplicate pairs across the target's folds ({len(seeds) if spec.folds else 1} fold "
         f"assignment(s)), {len(pairs) - inside} between sources and the target; see the report's leakage section.")
    return len(pairs)


def _log_as(client, run_id: str, path) -> None:
    """Log the cached table under the artifact name the report reads (the cache file has a key as its name)."""
    folder, name = ARTIFACT.rsplit("/", 1)
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(path, Path(tmp) / name)
        client.log_artifact(run_id, str(Path(tmp) / name), folder)

"""A trained cell's resume folder: where its fit checkpoints each epoch, and the MLflow run it continues.

    folder = ResumeFolder.of(spec, ctx.cache_dir)     # .medtl_cache/resume/<spec hash>/
    previous = folder.start(run)                       # the killed run this one continues, if a checkpoint is left
    ... train_and_test(..., Machine(resume_dir=folder.path)) ...
    folder.record(run, result, previous)               # tags medtl.resumed_from_epoch / _run, the killed run's epochs
    folder.clean()                                     # once the cell's run holds everything

The folder is keyed by the cell's spec hash, so only a rerun of the same cell resumes from it; it
stays until the cell has logged its evaluation (a kill after the fit resumes at the last epoch and
only tests again). A resumed cell is a new MLflow run (the killed one is marked KILLED by the claims),
tagged with the epoch it continued at and the killed run's id, and given the killed run's per-epoch
metrics up to the checkpoint, so its curves are whole.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from mlflow.entities import Metric

from tasks.training.resume import last_checkpoint
from tracking.naming import RESUMED_RUN_TAG, RESUMED_TAG

RUN_FILE = "run.json"  # the run id of the cell's latest attempt


@dataclass(frozen=True)
class ResumeFolder:
    path: Path  # <cache>/resume/<spec hash>

    @staticmethod
    def of(spec, cache_dir: Path) -> "ResumeFolder":
        return ResumeFolder(Path(cache_dir) / "resume" / spec.hash)

    def start(self, run) -> str | None:
        """Record `run` as the cell's latest attempt; returns the killed attempt's run id when a checkpoint is left."""
        previous = None
        if last_checkpoint(self.path) is not None and (self.path / RUN_FILE).is_file():
            previous = json.loads((self.path / RUN_FILE).read_text()).get("run_id")
        self.path.mkdir(parents=True, exist_ok=True)
        (self.path / RUN_FILE).write_text(json.dumps({"run_id": run.run_id}))
        return previous

    def record(self, client, run, extra: dict, previous: str | None) -> None:
        """Tag a resumed run and copy the killed run's metric history up to the checkpoint's step into it."""
        if "resumed_from_epoch" not in extra:
            return
        run.set_tags({RESUMED_TAG: str(extra["resumed_from_epoch"]), **({RESUMED_RUN_TAG: previous} if previous else {})})
        if not previous:
            return
        step = int(extra.get("resumed_from_step", -1))
        try:
            names = list(client.get_run(previous).data.metrics)
        except Exception:  # noqa: BLE001 - the killed run was deleted: the curves start at the resumed epoch
            return
        history = [m for name in names for m in client.get_metric_history(previous, name) if m.step <= step]
        for i in range(0, len(history), 1000):  # MLflow's log_batch limit
            client.log_batch(run.run_id, metrics=[Metric(m.key, m.value, m.timestamp, m.step) for m in history[i:i + 1000]])

    def clean(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)

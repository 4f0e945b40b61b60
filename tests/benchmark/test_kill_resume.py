"""A suite SIGKILLed at random moments and rerun each time ends as if never killed; two workers share cells.

    PYTHONPATH=. .venv/bin/python -m pytest -q -n 0 -m slow tests/benchmark/test_kill_resume.py -s

Real processes (`python -m benchmark.cli`), killed by PID: SIGKILL cannot be caught, so what is
tested is what a rerun finds (stale RUNNING runs marked KILLED, and said so) and that the cell
claims keep every cell to one FINISHED run. Bounded: every wait has a timeout.
"""

from __future__ import annotations

import collections
import random
import re
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest

from tests.benchmark.faults import RUN_TIMEOUT_S, cell_runs, finish, runs, start_suite, suite

KILLS = 20
SEED = 8
STARTUP_SHARE = 0.25  # kills drawn within start-up (imports, store, data checks); the rest once cells run
# The tiny suite: one pretraining cell (so fine-tuning cells depend on another cell's weights),
# then 2 sources x 2 folds of fine-tuning: 5 cells.
KILL_SUITE = dict(
    name="tiny",
    folds=2,
    sources={"none": {"weights": "scratch"},
             "gen": {"pretrain": {"dataset": "gen-general", "options": {"size": 32, "per_class": 6}, "hparams": {"epochs": 1}}}},
)


def _suite_started(folder: Path, proc: subprocess.Popen) -> bool:
    """Wait until `proc` has its parent run (or has ended): from then on it claims and runs cells."""
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while proc.poll() is None and time.monotonic() < deadline:
        if any(r.data.tags.get("medtl.pid") == str(proc.pid) for r in runs(f"sqlite:///{folder / 'mlruns.db'}")
               if r.data.tags.get("medtl.stage") == "suite"):
            return True
        time.sleep(0.2)
    return proc.poll() is not None


def _board(folder: Path) -> pd.DataFrame:
    table = pd.read_csv(folder / "reports" / "tiny" / "leaderboard.csv")
    # throughput and wall times vary with load; every quality column must be identical
    timing = ("fps", "seconds", "ips")  # inference/training images per second, wall times
    return table.drop(columns=[c for c in table.columns if any(t in c.lower() for t in timing)])


@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_sigkill_at_random_moments_then_rerun_gives_the_uninterrupted_result(tmp_path):
    reference, faulty = tmp_path / "reference", tmp_path / "faulty"
    for folder in (reference, faulty):
        folder.mkdir()
    started = time.monotonic()
    code, out = finish(start_suite(reference, suite(reference, **KILL_SUITE)))
    duration = time.monotonic() - started
    assert code == 0, out[-3000:]
    cells = {r.data.tags["medtl.spec_hash"] for r in cell_runs(reference)}
    # A quarter of the moments fall in start-up; the rest are drawn, once the suite's parent run
    # exists, over the cells not finished yet plus the report, so kills land in every phase.
    suite_s = float(re.search(r"Done in ([\d.]+) s", out).group(1))
    startup_s, cell_s = max(duration - suite_s, 0.0), suite_s / len(cells)

    path = suite(faulty, **KILL_SUITE)
    rng = random.Random(SEED)
    landed, in_suite, outputs = 0, 0, []
    for _ in range(KILLS):
        done = {r.data.tags["medtl.spec_hash"] for r in cell_runs(faulty) if r.info.status == "FINISHED"}
        proc = start_suite(faulty, path)
        during_startup = rng.random() < STARTUP_SHARE
        # +1 s: the skip-and-report phase once every cell is done (the suite ends a second or two after its parent run starts)
        moment = rng.uniform(0.0, startup_s if during_startup else cell_s * len(cells - done) + 1.0)
        try:
            if not during_startup and not _suite_started(faulty, proc):
                raise subprocess.TimeoutExpired(proc.args, 0)  # cannot happen unless it hangs: kill it now
            proc.wait(timeout=moment)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)  # by PID: only this process
            landed += 1
            in_suite += not during_startup
        code, out = finish(proc)
        outputs.append(out)
        assert code in (0, -signal.SIGKILL), out[-3000:]
    code, out = finish(start_suite(faulty, path))
    outputs.append(out)
    assert code == 0, out[-3000:]

    all_runs = runs(f"sqlite:///{faulty / 'mlruns.db'}")
    finished = collections.Counter(r.data.tags["medtl.spec_hash"] for r in cell_runs(faulty) if r.info.status == "FINISHED")
    duplicates = {h: n for h, n in finished.items() if n > 1}
    killed = [r for r in all_runs if r.info.status == "KILLED"]
    reported = sum(len(re.findall(r"Marked stale RUNNING run", o)) for o in outputs)
    print(f"\nSIGKILL test: {KILLS} runs killed at random moments ({landed} kills landed while running, {in_suite} "
          f"after the suite started), {KILLS + 1} "
          f"reruns, {len(cells)} cells, {len(killed)} runs left RUNNING and marked KILLED on rerun, "
          f"{len(duplicates)} duplicated cells; reference run {duration:.0f} s "
          f"({startup_s:.0f} s start-up, {cell_s:.1f} s per cell)")
    assert set(finished) == cells and not duplicates  # every cell FINISHED exactly once
    assert [r for r in all_runs if r.info.status == "RUNNING"] == []
    assert all(r.data.tags.get("medtl.error", "").startswith("stale:") for r in killed)
    assert reported == len(killed)  # each one said so, once
    assert landed >= KILLS // 2 and killed  # the kills mostly hit a running suite, and left runs behind
    pd.testing.assert_frame_equal(_board(faulty), _board(reference))


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_two_workers_on_one_fresh_store_never_run_a_cell_twice(tmp_path):
    path = suite(tmp_path, **{**KILL_SUITE, "folds": 3})
    procs = [start_suite(tmp_path, path) for _ in range(2)]  # both create the fresh store at once, too
    results = [finish(p) for p in procs]
    for code, out in results:
        assert code == 0, out[-3000:]
    ran_runs = cell_runs(tmp_path)
    finished = collections.Counter(r.data.tags["medtl.spec_hash"] for r in ran_runs if r.info.status == "FINISHED")
    ran = [int(re.search(r"Done in [\d.]+ s: (\d+) ran", out).group(1)) for _, out in results]
    print(f"\ntwo workers: {len(finished)} cells, ran {ran[0]} + {ran[1]}, FINISHED runs per cell: {set(finished.values())}")
    assert len(finished) == 1 + 3 * 2 and set(finished.values()) == {1}  # no cell ran twice
    assert sum(ran) == len(finished)
    assert [r for r in ran_runs if r.info.status != "FINISHED"] == []

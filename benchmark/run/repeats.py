"""Repeats until decided: add seeds in rounds and stop when the top rows' comparison crosses its boundary.

    medtl benchmark my-suite.yaml     # with  repeats: {until: decided, max_seeds: 5}

After the suite's own cells, the runner calls `run_rounds`: it replays the group-sequential design
(benchmark/report/sequential.py) over every finished cell, and while the top rows' comparison is not
decided and seeds remain, runs the next round's cells (one more seed, a new repeated k-fold draw;
benchmark/plan/repeats.py). Looking after every round is what the design's alpha spending pays for.
A rerun replays the same looks from the store (cells that finished are skipped, the boundaries are
deterministic), so an interrupted suite resumes the round it was in and stops where it would have.
"""

from __future__ import annotations

from collections.abc import Callable

from benchmark.plan.repeats import seed_rounds, with_seeds
from benchmark.plan.spec import RunSpec
from benchmark.report.results import load_results
from benchmark.report.sequential import Replay, replay
from tracking.naming import REPEATS_DECIDED_TAG, REPEATS_LOOKS_TAG
from tracking.runs import log_metrics


def run_rounds(outcome, ctx, parent_id: str, run_one: Callable[[RunSpec], None], echo=print) -> Replay | None:
    """Run rounds of seeds until decided or `max_seeds`; `run_one(spec)` runs one cell (the runner's claimed route).
    Leaves `outcome.suite` as the suite of the last round run, so the leaderboard counts its cells."""
    suite = outcome.suite
    rounds = seed_rounds(suite)
    tried: set[int] = set()
    logged = 0  # looks already logged to the parent run
    done = None
    while True:
        done = replay(load_results(ctx.client, suite=suite).cells, rounds)
        if done is None:
            echo("repeats: fewer than two rows finished at the first look; no comparison to decide, no seeds added.")
            return None
        logged = _log_looks(ctx.client, parent_id, done, logged)
        if done.stopped:
            break
        nxt = len(done.looks)  # index of the round after the last analysed look
        if nxt in tried:
            echo(f"repeats: round {nxt + 1}'s cells did not finish (see the failed cells); stopping at look {nxt}.")
            break
        tried.add(nxt)
        last = done.looks[-1] if done.looks else None
        echo(f"repeats: look {nxt} not decided (|t| = {abs(last.statistic) if last else float('nan'):.2f} < boundary "
             f"{last.boundary if last else float('nan'):.2f}); adding seed {rounds[nxt][-1]} (round {nxt + 1} of {len(rounds)}).")
        outcome.suite = with_seeds(suite, rounds[nxt])
        for spec in outcome.suite.cells:
            if spec.hash not in ctx.finished:
                run_one(spec)
    seeds = done.looks[-1].seeds if done.looks else 0
    outcome.suite = with_seeds(suite, rounds[max(len(done.looks), 1) - 1])  # a rerun that replays looks counts them too
    echo(f"repeats: {'decided' if done.decided else 'not decided'} after {len(done.looks)} of {done.planned_looks} planned "
         f"looks ({seeds} seeds).")
    return done


def _log_looks(client, parent_id: str, done: Replay, logged: int) -> int:
    """Tags with the looks so far and one metric step per look not logged yet; returns the looks logged."""
    client.set_tag(parent_id, REPEATS_LOOKS_TAG, str(len(done.looks)))
    client.set_tag(parent_id, REPEATS_DECIDED_TAG, str(done.decided).lower())
    for look in done.looks[logged:]:
        log_metrics(client, parent_id, {"repeats/statistic": look.statistic, "repeats/boundary": look.boundary,
                                        "repeats/difference": look.difference}, step=look.look)
    return len(done.looks)

"""Rounds of seeds for a suite with `repeats: {until: decided, max_seeds: N}`.

    medtl benchmark my-suite.yaml     # benchmark/run/repeats.py runs the rounds; this module only plans them

Look 1 is the suite's own seeds; each later round adds one seed, a new repeated k-fold draw
(seed s assigns folds with `tasks.data.splits.assign_folds(task, k, s)`), numbered after the largest
seed given, until `max_seeds` seeds in all. A round's cells are the suite's cells for its seeds, expanded
by the same code as the suite's own (`benchmark.plan.suite.expand`), so their identities are the
identities those seeds would have if written in the YAML: a later edit to `seeds:` reuses them.
"""

from __future__ import annotations

from dataclasses import replace

from benchmark.plan.suite import Suite, expand


def seed_rounds(suite: Suite) -> list[tuple[int, ...]]:
    """Cumulative seeds of every planned look: [the suite's seeds, + one new seed, ...] up to max_seeds; one look without repeats."""
    seeds = [int(s) for s in suite.model.seeds]
    rounds = [tuple(seeds)]
    if not suite.repeats:
        return rounds
    nxt = max(seeds) + 1
    while len(rounds[-1]) < int(suite.repeats["max_seeds"]):
        rounds.append((*rounds[-1], nxt))
        nxt += 1
    return rounds


def with_seeds(suite: Suite, seeds) -> Suite:
    """`suite` with the cells of `seeds` (pretraining cells keep the first seed, as the suite's own do). Its model keeps
    the file's own seeds, so `seed_rounds` of the widened suite plans the same rounds."""
    model = suite.model.model_copy(update={"seeds": [int(s) for s in seeds]})
    return replace(suite, cells=tuple(expand(model, suite.path)))

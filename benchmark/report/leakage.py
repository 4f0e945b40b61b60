"""Leakage in the answer: near-duplicate test images of the suite's own folds, and every row re-scored without them.

    medtl benchmark my-suite.yaml    # audits the folds first (benchmark/run/audit.py), logs audit/near_duplicates.csv
    medtl report my-suite.yaml       # section "Leakage: near-duplicates of test images"

The audit is tasks/data/audit.py's (64-bit pHash, pairs within DEFAULT_THRESHOLD bits, pixel-identical
ones marked `exact`), applied to the folds the cells used: for every seed, the sides are the fold ids
of `assign_folds(task, k, seed)`, so a pair is a test image with a near-copy in another fold, i.e. in
that cell's training or validation rows (both shape the tested model: one trains it, one picks its
epoch). With a fraction below 1 some of those rows were left out of training; the flag counts them
anyway, so the count is an upper bound there. Under an official split the sides are the split
names. A pretraining source's images are compared with every target image: a target test image with
a near-copy in the source that pretrained a row's backbone is flagged for that row's cells too.

Re-scoring drops the flagged items from each cell's test/predictions.csv and scores the rest with the
cells' own metric code (tasks.training.scoring.score_table), so a drop in MCC is the part of the
main number that near-copies bought.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from benchmark.report import statistics as st
from benchmark.report.comparisons import row_label
from benchmark.report.render import Section
from benchmark.report.results import ROW_KEYS, SuiteResults
from tasks.data.audit import DEFAULT_THRESHOLD, OTHER_PREFIX, image_fingerprints, near_duplicate_pairs, pair_table, sides_of
from tasks.data.index import Task
from tasks.data.splits import assign_folds
from tracking.naming import AUDIT_TAG

ARTIFACT = "audit/near_duplicates.csv"  # on the suite's parent run
ALL_SEEDS = -1  # `seed` of pairs that hold for every seed: official split sides, source-target pairs
TARGET = "target"  # `scope` of pairs inside the target; a source's pairs have scope "source:<name>"
PAIR_COLUMNS = ["scope", "seed", "split_a", "item_a", "split_b", "item_b", "distance", "exact"]
RESCORED = ("mcc", "f1", "acc_micro", "auc")


def fold_duplicates(task: Task, folds: int, seeds, *, sources: dict[str, Task] | None = None,
                    threshold: int = DEFAULT_THRESHOLD) -> pd.DataFrame:
    """Near-duplicate pairs across the folds of every seed (k-fold, `folds` >= 2) or across the official split
    (`folds` 0), and between each source and the target; PAIR_COLUMNS, each image hashed once."""
    hashes, digests = image_fingerprints(task)
    items = task.index["item"].astype(str).to_numpy()
    frames = []
    assignments = [(ALL_SEEDS, sides_of(task, None))] if folds == 0 else [
        (int(seed), assign_folds(task, folds, int(seed)).astype(str)) for seed in seeds]
    for seed, sides in assignments:
        sides = np.asarray(sides).astype(str)
        sides[np.isin(sides, ("", "-1"))] = ""
        table = pair_table(near_duplicate_pairs(hashes, sides, threshold), sides, items, digests)
        frames.append(table.assign(scope=TARGET, seed=seed))
    for name, source in (sources or {}).items():
        other_hashes, other_digests = image_fingerprints(source)
        side = f"{OTHER_PREFIX}{name}"
        all_sides = np.concatenate([np.full(len(items), TARGET), np.full(len(other_hashes), side)])
        all_items = np.concatenate([items, [f"{side}/{i}" for i in source.index["item"].astype(str)]])
        table = pair_table(near_duplicate_pairs(np.concatenate([hashes, other_hashes]), all_sides, threshold), all_sides,
                           all_items, np.concatenate([digests, other_digests]))
        frames.append(table.assign(scope=f"source:{name}", seed=ALL_SEEDS))
    pairs = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=PAIR_COLUMNS)
    return pairs[PAIR_COLUMNS]


def flagged_items(pairs: pd.DataFrame, fold: int, seed: int, source: str | None = None) -> set[str]:
    """Items of test fold `fold` (seed `seed`; fold -1: the official test split) with a near-copy in its training
    rows, or in `source`'s pretraining images when given."""
    test = "test" if fold == -1 else str(fold)
    inside = pairs[(pairs["scope"] == TARGET) & pairs["seed"].isin([seed, ALL_SEEDS])]
    split_a, split_b = inside["split_a"].astype(str), inside["split_b"].astype(str)
    # A pair joins two different sides, so the other side of a test image is a training (or validation) side.
    flagged = set(inside.loc[split_a == test, "item_a"].astype(str)) | set(inside.loc[split_b == test, "item_b"].astype(str))
    if source is not None:
        flagged |= set(pairs.loc[pairs["scope"] == f"source:{source}", "item_b"].astype(str))  # the target side is b
    return flagged


def flagged_per_seed(pairs: pd.DataFrame) -> dict[int, int]:
    """Test images with a near-copy in their fold's training rows, per seed (ALL_SEEDS: the official split).
    Under k-fold every image is a test image once per seed, so these are the images in any pair of that seed."""
    target = pairs[pairs["scope"] == TARGET]
    out = {}
    for seed, group in target.groupby("seed"):
        if int(seed) == ALL_SEEDS:
            sides = [(group["split_a"].astype(str) == "test", "item_a"), (group["split_b"].astype(str) == "test", "item_b")]
            out[int(seed)] = len(set().union(*(set(group.loc[m, c].astype(str)) for m, c in sides)))
        else:
            out[int(seed)] = len(set(group["item_a"].astype(str)) | set(group["item_b"].astype(str)))
    return out


def audit_pairs(results: SuiteResults) -> pd.DataFrame | None:
    """The audit pairs logged by the suite's latest parent run that has them; None when no run audited."""
    from tracking.runs import search_runs

    if results.client is None:
        return None
    runs = search_runs(results.client, results.experiment_id, f"tags.`{AUDIT_TAG}` != ''")
    for run in sorted(runs, key=lambda r: r.info.start_time, reverse=True):
        table = results.artifact_table(run.info.run_id, ARTIFACT, dtype={"item_a": str, "item_b": str, "split_a": str, "split_b": str})
        if table is not None:
            return table
    return None


def rescore(results: SuiteResults, pairs: pd.DataFrame) -> pd.DataFrame:
    """Per finished cell: test images, flagged images, and RESCORED metrics on the test images left."""
    from tasks.training.scoring import score_table

    records = []
    for cell in results.cells.to_dict("records"):
        frame = results.predictions(cell["run_id"])
        if frame is None or "target" not in frame:
            continue
        flagged = flagged_items(pairs, int(cell["fold"]), int(cell["seed"]), cell["source"])
        keep = ~frame["item"].astype(str).isin(flagged)
        record = {**{k: cell[k] for k in (*ROW_KEYS, "fold", "seed")}, "test_images": len(frame), "flagged": int((~keep).sum())}
        names = [c[2:] for c in frame.columns if c.startswith("p:")]
        if keep.sum() and frame.loc[keep, "target"].nunique() > 1:
            scores = score_table(frame[keep].reset_index(drop=True), class_names=names or None)["macro"]
            record.update({m: scores.get(m, np.nan) for m in ("mcc", "f1", "auc")})
            record["acc_micro"] = float((frame.loc[keep, "target"] == frame.loc[keep, "predicted"]).mean())
        records.append(record)
    return pd.DataFrame(records)


def leakage_section(results: SuiteResults, board: pd.DataFrame) -> tuple[Section, pd.DataFrame, pd.DataFrame]:
    """The report's leakage section, the per-row table (leakage.csv) and the per-cell re-scores (leakage_cells.csv)."""
    section = Section("Leakage: near-duplicates of test images", [
        "Test images with a near-duplicate (pHash within 4 of 64 bits, tasks/data/audit.py) in their own cell's training or "
        "validation rows, or in the pretraining images of the row's source; each row re-scored on its test images without them "
        "(benchmark/report/leakage.py). A large drop means part of the main number came from near-copies of training images."])
    pairs = audit_pairs(results)
    if pairs is None:
        section.paragraphs.append("No audit in this store: suites audit their folds when `medtl benchmark` starts.")
        return section, pd.DataFrame(), pd.DataFrame()
    target = pairs[pairs["scope"] == TARGET]
    sources = pairs[pairs["scope"] != TARGET]
    cells = rescore(results, pairs) if len(results.cells) else pd.DataFrame()
    counts = flagged_per_seed(pairs)
    images = cells.drop_duplicates(["fold", "seed"]).groupby("seed")["test_images"].sum().to_dict() if len(cells) else {}
    section.paragraphs.append(
        f"Audit: {len(target)} near-duplicate pairs across the target's folds ({int(target['exact'].sum()) if len(target) else 0} "
        f"pixel-identical); test images with a near-duplicate in their fold's training rows: "
        + (", ".join(f"{'official split' if s == ALL_SEEDS else f'seed {s}'}: {n}" + (f" of {images[s]}" if s in images else "")
                     for s, n in counts.items()) or "none")
        + f". {len(sources)} pairs between pretraining sources and the target. All pairs: {ARTIFACT} of the parent run.")
    if not len(cells):
        section.paragraphs.append("No cell predictions to re-score.")
        return section, pd.DataFrame(), cells
    rows = []
    for key, group in cells.groupby(list(ROW_KEYS), sort=False):
        row = dict(zip(ROW_KEYS, key))
        main = results.cells[np.logical_and.reduce([(results.cells[k] == v).to_numpy() for k, v in row.items()])]
        record = {"row": row_label(row), "n": len(group), "test_images": int(group["test_images"].sum()),
                  "flagged": int(group["flagged"].sum()), "flagged_per_cell": float(group["flagged"].mean())}
        for metric in RESCORED:
            a = st.mean_ci(main[metric]) if metric in main else st.mean_ci([])
            b = st.mean_ci(group[metric]) if metric in group else st.mean_ci([])
            record.update({metric: a.mean, f"{metric}_dedup": b.mean})
            if metric == "mcc":  # the headline metric gets its interval; leakage_cells.csv has every cell
                record.update(mcc_dedup_low=b.low, mcc_dedup_high=b.high)
        rows.append(record)
    table = pd.DataFrame(rows)
    order = {r: i for i, r in enumerate(board["row"])} if len(board) and "row" in board else {}
    table = table.sort_values("row", key=lambda s: s.map(lambda r: order.get(r, len(order))), kind="stable", ignore_index=True)
    section.paragraphs.append("Per row: flagged test images over its cells (its source's pretraining near-copies included), "
                              "main numbers beside the de-duplicated ones (mean [95 % t-interval] over folds x seeds).")
    section.tables.append(("", table))
    return section, table, cells

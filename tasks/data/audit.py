"""Leakage audit: near-duplicate images across splits (and between a source and a target task), and
groups (patient, surgery video) that appear on both sides of a split.

    >>> report = audit(task, make_fold(task, fold=0, k=5, seed=0), other=load_task("lapgyn4", root))
    >>> report.ok, report.duplicates, report.cross, report.group_leaks

An assignment says which side of a split each index row is on: None (the task's official `split`
column), a `Fold` (rows named "train" / "val" / "test"), or one value per row (fold ids from
`assign_folds`, split names). Rows whose value is "" or -1 are on no side and are not audited.

Near-duplicates are found by perceptual hash: the 64-bit pHash of the `imagehash` package (DCT of the
32x32 greyscale image, sign of the 8x8 low frequencies against their median), which survives
re-compression, resizing and mild noise. Two images are near-duplicates when their hashes differ in at
most `threshold` bits (default 4 of 64; unrelated images differ in ~32). Each report row also counts
the pixel-identical pairs among them (`n_exact`, by a digest of the decoded pixels). On tiny, low-detail
images (28 px MedMNIST) pHash groups images that are visually almost the same: BreastMNIST has one
pixel-identical train/test pair but ~100 pHash pairs within 4 bits across its splits, most of them with
a mean absolute pixel difference below 5 grey levels, i.e. real near-copies rather than false alarms.

Finding all pairs within distance t without comparing every pair (multi-index hashing): cut the 64
bits into t + 1 bands. Two hashes that differ in at most t bits agree exactly on at least one band
(pigeonhole), so it suffices to compare images that share a (band, value) bucket; candidates are then
checked on the full hash. With t = 0 this is plain exact-hash grouping. Buckets are small for varied
images, so the cost is O(N) hashing plus O(N * bucket size) comparisons, done with numpy per bucket.
Only pairs on different sides are compared, so near-identical frames of one video in one split cost
nothing beyond the hashing.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from PIL import Image

from tasks.data.errors import DataError
from tasks.data.index import Task
from tasks.data.splits import Fold

HASH_BITS = 64
DEFAULT_THRESHOLD = 4
MAX_EXAMPLES = 3  # item pairs listed per row of a report: enough to find the files, short enough to print
UNASSIGNED = ("", "-1")
BLOCK_PAIRS = 4_000_000  # hash comparisons per numpy block (32 MB of uint64)
OTHER_PREFIX = "other:"  # side name prefix of the other task's images


@dataclass(frozen=True)
class AuditReport:
    """What an audit found; empty tables mean no leak of that kind."""

    pairs: pd.DataFrame  # every pair found: split_a, item_a, split_b, item_b, distance, exact; to fix the data
    duplicates: pd.DataFrame  # split_a, split_b, n_pairs, n_exact, examples: near-duplicates across sides
    cross: pd.DataFrame  # the same between the other task (split_a "other:<name>") and this task's sides;
    #                      the other task's items appear as "other:<name>/<item>"
    group_leaks: pd.DataFrame  # group, sides, n_items: groups present on more than one side
    threshold: int = DEFAULT_THRESHOLD  # Hamming distance (bits of 64) up to which images count as duplicates
    notes: tuple[str, ...] = field(default=())  # what was audited, for the report's reader

    @property
    def ok(self) -> bool:
        return self.duplicates.empty and self.cross.empty and self.group_leaks.empty

    def summary(self) -> str:
        across = int(self.duplicates["n_pairs"].sum()) if len(self.duplicates) else 0
        cross = int(self.cross["n_pairs"].sum()) if len(self.cross) else 0
        lines = list(self.notes) + [
            f"near-duplicate pairs across splits: {across}",
            f"near-duplicate pairs with the other task: {cross}",
            f"groups on more than one side: {len(self.group_leaks)}",
        ]
        return "\n".join(lines)


def sides_of(task: Task, assignment) -> np.ndarray:
    """One side name (str) per index row; "" for rows on no side."""
    n = len(task.index)
    if assignment is None:
        if not task.has_official_split:
            raise DataError(
                f"{task.meta.name} has no official split; pass an assignment (a Fold, or fold ids from assign_folds)."
            )
        return task.index["split"].astype(str).to_numpy()
    if isinstance(assignment, Fold):
        sides = np.full(n, "", dtype=object)
        for name in ("train", "val", "test"):
            sides[np.asarray(getattr(assignment, name), dtype=np.int64)] = name
        return sides.astype(str)
    sides = np.asarray([str(a) for a in np.asarray(assignment).tolist()])
    if len(sides) != n:
        raise DataError(f"assignment has {len(sides)} values but {task.meta.name} has {n} rows; give one per row.")
    sides[np.isin(sides, UNASSIGNED)] = ""
    return sides


def phash(pixels: np.ndarray) -> np.uint64:
    """64-bit perceptual hash of an (H, W, 3) uint8 image, as an unsigned integer."""
    import imagehash  # optional dependency: only the audit needs it

    bits = imagehash.phash(Image.fromarray(pixels)).hash.reshape(-1)
    return np.packbits(bits).view(">u8")[0].astype(np.uint64)


def image_fingerprints(task: Task, rows=None) -> tuple[np.ndarray, np.ndarray]:
    """(pHash as uint64, digest of the exact pixels) of the images at `rows` (all when None), in order.

    Each image is loaded once; the digest tells pixel-identical copies from merely similar images.
    """
    rows = np.arange(len(task.index)) if rows is None else np.asarray(rows, dtype=np.int64)
    items = task.index["item"].to_numpy()
    hashes = np.empty(len(rows), dtype=np.uint64)
    digests = np.empty(len(rows), dtype=object)
    for n, r in enumerate(rows):
        pixels = task.images.load(items[r])
        hashes[n] = phash(pixels)
        digests[n] = hashlib.blake2b(repr(pixels.shape).encode() + pixels.tobytes(), digest_size=16).digest()
    return hashes, digests


def _popcount(x: np.ndarray) -> np.ndarray:
    if hasattr(np, "bitwise_count"):  # numpy >= 2.0
        return np.bitwise_count(x)
    return np.unpackbits(x.astype(np.uint64)[..., None].view(np.uint8), axis=-1).sum(-1)


def _bands(threshold: int) -> list[tuple[int, int]]:
    """(shift, width) of threshold + 1 bit bands covering the 64 bits."""
    n = threshold + 1
    if not 1 <= n <= HASH_BITS:
        raise DataError(f"threshold must be in 0..{HASH_BITS - 1} bits, got {threshold}.")
    edges = np.linspace(0, HASH_BITS, n + 1).round().astype(int)
    return [(int(lo), int(hi - lo)) for lo, hi in zip(edges[:-1], edges[1:])]


def near_duplicate_pairs(hashes: np.ndarray, sides: np.ndarray, threshold: int) -> pd.DataFrame:
    """All pairs (a, b), a < b, on different non-empty sides whose hashes differ in <= threshold bits.

    Returns columns a, b (positions into `hashes`) and distance.
    """
    hashes = np.asarray(hashes, dtype=np.uint64)
    sides = np.asarray(sides)
    active = np.flatnonzero(sides != "")
    found_a, found_b = [], []
    for shift, width in _bands(threshold):
        keys = (hashes[active] >> np.uint64(shift)) & np.uint64((1 << width) - 1)
        order = np.argsort(keys, kind="stable")
        starts = np.flatnonzero(np.r_[True, keys[order][1:] != keys[order][:-1]])
        ends = np.r_[starts[1:], len(order)]
        for start, end in zip(starts[ends - starts > 1], ends[ends - starts > 1]):  # singletons pair with none
            bucket = active[order[start:end]]
            bucket_sides = sides[bucket]
            names = np.unique(bucket_sides)
            for i, side in enumerate(names[:-1]):
                rows_a = bucket[bucket_sides == side]
                rows_b = bucket[np.isin(bucket_sides, names[i + 1:])]
                # Blocks of rows_a keep the distance matrix small when many near-identical frames
                # (blank video frames, say) share a bucket.
                step = max(1, BLOCK_PAIRS // len(rows_b))
                for lo in range(0, len(rows_a), step):
                    block = rows_a[lo:lo + step]
                    dist = _popcount(hashes[block][:, None] ^ hashes[rows_b][None, :])
                    ia, ib = np.nonzero(dist <= threshold)
                    found_a.append(block[ia])
                    found_b.append(rows_b[ib])
    if not found_a:
        return pd.DataFrame({"a": [], "b": [], "distance": []}, dtype=np.int64)
    a, b = np.concatenate(found_a), np.concatenate(found_b)
    # A pair that shares several bands is found once per band: keep it once.
    key = np.unique(np.minimum(a, b) * len(hashes) + np.maximum(a, b))
    a, b = key // len(hashes), key % len(hashes)
    return pd.DataFrame({"a": a, "b": b, "distance": _popcount(hashes[a] ^ hashes[b]).astype(np.int64)})


def _side_key(side: str) -> tuple[bool, str]:
    return (not side.startswith(OTHER_PREFIX), side)


def pair_table(pairs: pd.DataFrame, sides: np.ndarray, items: np.ndarray, digests: np.ndarray) -> pd.DataFrame:
    """One row per pair: split_a, item_a, split_b, item_b, distance, exact (pixel-identical); closest first.

    The sides of each pair are in sorted order, except that the other task's side always comes first.
    """
    a, b = pairs["a"].to_numpy(dtype=np.int64), pairs["b"].to_numpy(dtype=np.int64)
    swap = np.asarray([_side_key(x) > _side_key(y) for x, y in zip(sides[a], sides[b])], dtype=bool)
    a, b = np.where(swap, b, a), np.where(swap, a, b)
    table = pd.DataFrame({
        "split_a": sides[a].astype(object), "item_a": items[a].astype(object),
        "split_b": sides[b].astype(object), "item_b": items[b].astype(object),
        "distance": pairs["distance"].to_numpy(dtype=np.int64),
        "exact": np.asarray([digests[i] == digests[j] for i, j in zip(a, b)], dtype=bool),
    })
    return table.sort_values(["split_a", "split_b", "distance", "item_a", "item_b"], ignore_index=True)


def summarize_pairs(table: pd.DataFrame) -> pd.DataFrame:
    """A pair table -> one row per (split_a, split_b): n_pairs, n_exact (pixel-identical among them) and up
    to MAX_EXAMPLES (item_a, item_b, distance), closest first."""
    rows = []
    for (sa, sb), group in table.groupby(["split_a", "split_b"], sort=True):
        examples = list(zip(group["item_a"], group["item_b"], group["distance"].astype(int)))[:MAX_EXAMPLES]
        rows.append((sa, sb, len(group), int(group["exact"].sum()), examples))
    return pd.DataFrame(rows, columns=["split_a", "split_b", "n_pairs", "n_exact", "examples"])


def duplicates_across_splits(task: Task, assignment=None, *, threshold: int = DEFAULT_THRESHOLD) -> pd.DataFrame:
    """Near-duplicate images on different sides of `assignment`, per pair of sides."""
    sides = sides_of(task, assignment)
    rows = np.flatnonzero(sides != "")
    hashes, digests = image_fingerprints(task, rows)
    pairs = near_duplicate_pairs(hashes, sides[rows], threshold)
    items = task.index["item"].astype(str).to_numpy()[rows]
    return summarize_pairs(pair_table(pairs, sides[rows], items, digests))


def group_leaks(task: Task, assignment=None) -> pd.DataFrame:
    """Groups (patient, video) with rows on more than one side: columns group, sides, n_items."""
    sides = sides_of(task, assignment)
    frame = pd.DataFrame({"group": task.index["group"].to_numpy(), "side": sides})
    frame = frame[frame["side"] != ""]
    per_group = frame.groupby("group", sort=True)["side"].agg(lambda s: tuple(sorted({str(x) for x in s})))  # str, not np.str_
    counts = frame.groupby("group", sort=True).size()
    leaks = per_group[per_group.map(len) > 1]
    return pd.DataFrame({"group": leaks.index.to_numpy(dtype=object), "sides": leaks.to_numpy(),
                         "n_items": counts[leaks.index].to_numpy(dtype=np.int64)})


def audit(task: Task, assignment=None, other: Task | None = None, *, threshold: int = DEFAULT_THRESHOLD) -> AuditReport:
    """Near-duplicates across the sides of `assignment` and with `other` (e.g. a pretraining source),
    and groups on several sides. Each image is hashed once."""
    sides = sides_of(task, assignment)
    rows = np.flatnonzero(sides != "")
    hashes, digests = image_fingerprints(task, rows)
    items = task.index["item"].astype(str).to_numpy()[rows]
    all_sides = sides[rows]
    names = ", ".join(sorted({str(s) for s in all_sides}))  # str(): numpy 2 prints np.str_('0') in lists
    notes = [f"{task.meta.name}: {len(rows)} images on sides {names}, threshold {threshold} bits"]
    if other is not None:
        # Every image of the other task is on one side of its own, so pairs inside it are never compared.
        other_side = f"{OTHER_PREFIX}{other.meta.name}"
        other_hashes, other_digests = image_fingerprints(other)
        hashes = np.concatenate([hashes, other_hashes])
        digests = np.concatenate([digests, other_digests])
        items = np.concatenate([items, [f"{other_side}/{i}" for i in other.index["item"].astype(str)]])
        all_sides = np.concatenate([all_sides, np.full(len(other.index), other_side)])
        notes.append(f"{other.meta.name}: {len(other.index)} images compared with every side")
    table = pair_table(near_duplicate_pairs(hashes, all_sides, threshold), all_sides, items, digests)
    involves_other = table["split_a"].str.startswith(OTHER_PREFIX).to_numpy(dtype=bool)
    return AuditReport(
        pairs=table,
        duplicates=summarize_pairs(table[~involves_other]),
        cross=summarize_pairs(table[involves_other]),
        group_leaks=group_leaks(task, assignment),
        threshold=threshold,
        notes=tuple(notes),
    )

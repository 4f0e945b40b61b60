"""The medical pretraining source: LapGyn4 and Cataract-101 as one task (registered `lapgyn4+cataract101`).

On-disk layout (defaults; either root can be given on its own with `lapgyn4_root=` / `cataract101_root=`):

    <root>/LapGyn4_v1.2/<Part>/<class>/*.jpg     the `lapgyn4` adapter's layout
    <root>/cataract-101/{videos,phases,annotations}.csv, videos/case_<id>.mp4   the `cataract101` layout

Classes are namespaced by source: `lapgyn4:<part>/<class>` and `cataract101:<phase name>`, LapGyn4's
first. Items are `<source>:<item of that source>` and resolve through `CompositeStore`; groups are
`<source>:<group>` (so a Cataract-101 video stays whole in every split). Neither source has an official
split, so the union has none either (k-fold splits are made).

Options: `parts` goes to `lapgyn4`; `fps`, `every_n`, `cache_dir` and `missing` go to `cataract101`.
It is the `union` adapter's (`tasks/data/adapters/union.py`) combination of these two members, kept
under its own name for its root defaults and its messages; the same task as

    dataset: union
    options: {members: [{dataset: lapgyn4, path: LapGyn4_v1.2}, {dataset: cataract101, path: cataract-101}]}
"""

from __future__ import annotations

from pathlib import Path

from tasks.data.adapters.union import CompositeStore, union_tasks
from tasks.data.cards import DatasetCard
from tasks.data.errors import DataError
from tasks.data.index import Task
from tasks.data.registry import load_task, register_dataset

__all__ = ["CompositeStore", "lapgyn4_cataract101", "union_tasks"]  # the union's pieces, where they first lived


@register_dataset("lapgyn4+cataract101", card=DatasetCard(
    summary="LapGyn4 + Cataract-101 as one medical pretraining source (Hicks et al.), classes namespaced",
    layout="both of the above under one root (`LapGyn4_v1.2/`, `cataract-101/`)",
    split="grouped k-fold",
    obtain="both parts by hand (`lapgyn4`, `cataract101`)",
    settings=("lapgyn4_root", "cataract101_root", "cache_dir"),
))
def lapgyn4_cataract101(
    root: Path | None,
    *,
    lapgyn4_root: Path | str | None = None,
    cataract101_root: Path | str | None = None,
    parts: str | list[str] | None = None,
    fps: float | None = None,
    every_n: int | None = None,
    cache_dir: Path | str | None = None,
    missing: str = "error",
) -> Task:
    """LapGyn4 + Cataract-101 as one pretraining source (see the module docstring)."""
    if root is None and (lapgyn4_root is None or cataract101_root is None):
        raise DataError(
            "lapgyn4+cataract101 needs --data-root <folder holding LapGyn4_v1.2 and cataract-101>, or both "
            "lapgyn4_root= and cataract101_root=."
        )
    lapgyn4_root = Path(lapgyn4_root) if lapgyn4_root is not None else Path(root) / "LapGyn4_v1.2"
    cataract101_root = Path(cataract101_root) if cataract101_root is not None else Path(root) / "cataract-101"
    for label, path, option in (("LapGyn4", lapgyn4_root, "lapgyn4_root"), ("Cataract-101", cataract101_root,
                                                                            "cataract101_root")):
        if not path.is_dir():
            raise DataError(f"lapgyn4+cataract101: {label} folder {path} not found; put it there or pass {option}=.")
    parts_ = {
        "lapgyn4": load_task("lapgyn4", lapgyn4_root, parts=parts),
        "cataract101": load_task("cataract101", cataract101_root, fps=fps, every_n=every_n, cache_dir=cache_dir, missing=missing),
    }
    return union_tasks(parts_, "lapgyn4+cataract101")

"""The facts of a dataset, declared once beside its adapter and read by every tool that needs them.

`register_dataset(name, card=DatasetCard(...))` attaches a card to an adapter. `medtl data download`
reads its files (or the manual steps a licence needs), `medtl data verify` its published counts,
the README's dataset table is generated from the cards (`medtl list --datasets`) and a test keeps
the two equal, and cell identity reads which options are settings rather than data.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any, Literal

Archive = Literal["zip", "tar", "none"]


@dataclass(frozen=True)
class RemoteFile:
    """One public file to fetch."""

    url: str  # public, direct link (no login)
    md5: str | None = None  # the publisher's digest; None = unknown, the sha256 seen is recorded instead
    sha256: str | None = None  # used when the publisher gives sha256
    archive: Archive = "zip"  # how to unpack it under root ("none": keep the file as is)
    path: str = ""  # where to save it under root, when not the URL's file name (e.g. in a subfolder)
    optional: bool = False  # the dataset works without it: a failed download is logged, not raised

    @property
    def filename(self) -> str:
        return self.path or PurePosixPath(self.url.split("?", 1)[0]).name


@dataclass(frozen=True)
class Source:
    """How to obtain one dataset (or one variant of it, e.g. one MedMNIST flag and size)."""

    folder: str  # what appears under root afterwards; pass root/folder as --data-root
    files: tuple[RemoteFile, ...] = ()  # empty for manual datasets
    page: str = ""  # the publisher's page: licence, citation, manual download
    manual: str = ""  # what a person must do (form, account, agreement); non-empty = manual
    layout: str = ""  # the folder layout the adapter expects, for manual downloads
    licence: str = ""  # shown with the instructions so users know the terms they accept


@dataclass(frozen=True)
class Published:
    """Image counts as the publisher states them (the paper or the download page)."""

    total: int  # images in the release
    classes: int  # number of classes
    per_class: int | None = None  # set when every class has this many (Kvasir)
    min_per_class: int | None = None  # smallest class, for unbalanced releases
    max_per_class: int | None = None  # largest class
    splits: tuple[dict[str, int], ...] = ()  # official split sizes; several when releases differ


@dataclass(frozen=True)
class DatasetCard:
    """Everything medtl knows about one dataset that is not code."""

    summary: str  # one line: what the images and labels are
    layout: str  # what --data-root points at, as the README table shows it
    split: str = "k-fold"  # how cells split it: "k-fold", "official", "official folds, else k-fold", ...
    source: Source | None = None  # how to download it; None for generated data and the user's own folders
    obtain: str = ""  # how to get it when `source` cannot say (a union of other datasets)
    published: Published | None = None  # publisher's counts, compared by `medtl data verify`
    # Per-option variants (MedMNIST: one file per flag and size): `variants()` lists every
    # downloadable one by key, `variant_key(options)` names the one a set of options means, and
    # `published_for(task)` gives the counts of the variant a loaded task is.
    variants: Callable[[], dict[str, Source]] | None = None
    variant_key: Callable[[Mapping[str, Any]], str] | None = None
    published_for: Callable[[Any], Published | None] | None = None
    # Cell identity (benchmark.plan.spec): options that never change the data (a cache folder) are
    # left out; options added after cells were recorded list here the value that reproduces the
    # earlier behaviour, and are left out of identity while they keep it.
    settings: tuple[str, ...] = ()
    neutral: Mapping[str, Any] = field(default_factory=dict)

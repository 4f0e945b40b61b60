"""Where each dataset comes from, and a resumable, checksummed, safe downloader.

    medtl data download kvasir-v2 --root ~/data
    medtl data download medmnist --root ~/data --option flag=breastmnist --option size=64
    python -m benchmark.data_cli download chest-xray --root ~/data   # prints what to do by hand

`CATALOGUE` maps a dataset name to a `Source`: public files (URL, published checksum, archive type,
the folder they extract to) or, where a licence form or registration stands in the way, the page
to visit and the folder layout to create. `download_dataset` reads it; `download` and
`safe_extract` are the two steps, usable on their own.

Own code rather than a library: `torchvision.datasets.utils.download_url` neither resumes nor
checks archives for path traversal, and `medmnist` downloads only its own files.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal

import requests
import urllib3
from tqdm import tqdm

from tasks.archives import safe_extract  # noqa: F401  (part of this module's API: download, then extract)
from tasks.errors import DataError

log = logging.getLogger(__name__)

Archive = Literal["zip", "tar", "none"]


class ManualDownloadRequired(DataError):
    """The dataset's licence needs a person (form, registration, agreement); `instructions` says how."""

    def __init__(self, name: str, instructions: str) -> None:
        self.name = name
        self.instructions = instructions
        super().__init__(instructions)


@dataclass(frozen=True)
class RemoteFile:
    """One file to fetch."""

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
    """How to obtain one dataset."""

    folder: str  # what appears under root afterwards; pass root/folder as --data-root
    files: tuple[RemoteFile, ...] = ()  # empty for manual datasets
    page: str = ""  # the publisher's page: licence, citation, manual download
    manual: str = ""  # what a person must do (form, account, agreement); non-empty = manual
    layout: str = ""  # the folder layout the adapter expects, for manual downloads
    licence: str = ""  # shown with the instructions so users know the terms they accept


SIMULA = "https://datasets.simula.no/downloads"
ITEC = "http://ftp.itec.aau.at/datasets"
HYPERKVASIR_SPLITS = "https://raw.githubusercontent.com/simula/hyper-kvasir/master/official_splits"

CATALOGUE: dict[str, Source] = {
    # Simula publishes no checksums for these archives: the first download records its sha256.
    "kvasir-v1": Source(
        folder="kvasir-dataset",
        files=(RemoteFile(f"{SIMULA}/kvasir/kvasir-dataset.zip"),),
        page="https://datasets.simula.no/kvasir/",
        layout="kvasir-dataset/<class>/*.jpg (8 classes x 500 images)",
        licence="research and educational use; cite Pogorelov et al. 2017",
    ),
    "kvasir-v2": Source(
        folder="kvasir-dataset-v2",
        files=(RemoteFile(f"{SIMULA}/kvasir/kvasir-dataset-v2.zip"),),
        page="https://datasets.simula.no/kvasir/",
        layout="kvasir-dataset-v2/<class>/*.jpg (8 classes x 1,000 images)",
        licence="research and educational use; cite Pogorelov et al. 2017",
    ),
    "hyperkvasir": Source(
        folder="labeled-images",
        files=(
            RemoteFile(f"{SIMULA}/hyper-kvasir/hyper-kvasir-labeled-images.zip"),
            # The official 2- and 5-fold splits live in the GitHub repository, not in the zip.
            *(RemoteFile(f"{HYPERKVASIR_SPLITS}/{k}_fold_split.csv", archive="none",
                         path=f"official_splits/{k}_fold_split.csv", optional=True) for k in (2, 5)),
        ),
        page="https://datasets.simula.no/hyper-kvasir/",
        layout="labeled-images/{lower,upper}-gi-tract/<category>/<class>/*.jpg (23 classes, 10,662 images) "
               "+ official_splits/{2,5}_fold_split.csv",
        licence="CC BY 4.0; cite Borgli et al. 2020",
    ),
    "chest-xray": Source(
        folder="chest_xray",
        page="https://data.mendeley.com/datasets/rscbjbr9sj/2",
        manual=(
            "Download ChestXRay2017.zip from Mendeley Data (or the Kaggle mirror "
            "https://www.kaggle.com/datasets/paultimothymooney/chest-xray-pneumonia, which needs a Kaggle "
            "account) and unzip it under the root."
        ),
        layout="chest_xray/{train,val,test}/{NORMAL,PNEUMONIA}/*.jpeg (5,856 images)",
        licence="CC BY 4.0; cite Kermany et al. 2018",
    ),
    "imageclef-concepts": Source(
        folder="ImageCLEF2019-caption",
        page="https://www.imageclef.org/2019/medical/caption",
        manual=(
            "Register for ImageCLEF 2019 Caption (concept detection) and sign the end-user agreement; "
            "the organisers then send the download links. Unzip the images and the concept CSVs under the root."
        ),
        layout="ImageCLEF2019-caption/{train,val}/<image_id>.jpg + *concept*{train,val}*.csv "
               "(<image_id><TAB>CUI;CUI;...) [+ concepts.csv]",
        licence="ImageCLEF end-user agreement (research only, no redistribution)",
    ),
    "lapgyn4": Source(
        folder="LapGyn4_v1.2",
        page=f"{ITEC}/LapGyn4/",
        manual="Fill in the ITEC Klagenfurt download form on the page; unzip the archive you receive under the root.",
        layout="LapGyn4_v1.2/{Actions_on_Anatomy,Anatomical_Structures,Instrument_Count,Surgical_Actions}/<class>/*.jpg",
        licence="research only; cite Leibetseder et al. 2018",
    ),
    "cataract101": Source(
        folder="cataract-101",
        page=f"{ITEC}/ovid/cat-101/",
        manual="Fill in the ITEC Klagenfurt download form on the page; unpack the videos and CSVs under the root.",
        layout="cataract-101/{videos.csv,phases.csv,annotations.csv,videos/case_<VideoID>.mp4}",
        licence="research only; cite Schoeffmann et al. 2018",
    ),
    "medico2018": Source(
        folder="Medico_2018_development_set",
        page="https://multimediaeval.github.io/2018-Medico-Task/",
        manual=(
            "The Medico 2018 development set is distributed by the task organisers: request it through the "
            "MediaEval 2018 Medico task page and unzip it under the root."
        ),
        layout="Medico_2018_development_set/<class>/*.jpg (16 classes, 5,293 images)",
        licence="MediaEval 2018 participation terms (research only)",
    ),
}


def _medmnist_sources() -> dict[str, Source]:
    """Every MedMNIST flag and size with its published MD5, straight from the package's INFO."""
    try:
        from medmnist import INFO
    except ImportError:  # the catalogue stays usable for the other datasets
        return {}
    sources = {}
    for flag, entry in INFO.items():
        for key in [k for k in entry if k == "url" or k.startswith("url_")]:
            suffix = key[len("url"):]  # "" or "_64" / "_128" / "_224"
            stem = f"{flag}{suffix}"
            sources[f"medmnist:{stem}"] = Source(
                folder=f"{stem}.npz",
                files=(RemoteFile(entry[key], md5=entry.get(f"MD5{suffix}"), archive="none"),),
                page="https://medmnist.com/",
                layout=f"{stem}.npz (keys <split>_images, <split>_labels)",
                licence=entry.get("license", "see medmnist.com"),
            )
    return sources


CATALOGUE.update(_medmnist_sources())


def catalogue_key(name: str, **options) -> str:
    """`medmnist` + flag/size options -> `medmnist:<flag>[_<size>]`; other names map to themselves."""
    if name == "medmnist":
        flag, size = options.get("flag"), int(options.get("size", 28))
        if not flag:
            raise DataError("medmnist needs a flag to download: add --option flag=<flag>, e.g. flag=breastmnist.")
        return f"medmnist:{flag}" if size == 28 else f"medmnist:{flag}_{size}"
    return name


# --- download ---------------------------------------------------------------------------------

_RETRY_STATUS = {408, 429, 500, 502, 503, 504}  # transient; anything else 4xx/5xx will not improve


def download(
    url: str,
    dest: Path | str,
    *,
    expected_md5: str | None = None,
    expected_sha256: str | None = None,
    timeout: float = 60.0,
    chunk: int = 1 << 20,
    retries: int = 5,
    backoff: float = 2.0,
) -> Path:
    """Fetch `url` to `dest`, resuming `dest.part` with a Range request after an interruption.

    Verifies the digest(s) given; with none given it writes `<dest>.sha256` so later runs (and
    the catalogue) can pin it. Raises DataError on a mismatch (the part file is deleted) or when
    `retries` further attempts still did not complete.
    """
    dest = Path(dest)
    part = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists():
        if _digests_match(dest, url, expected_md5, expected_sha256, delete_on_mismatch=None):
            log.info("%s already downloaded", dest)
            return dest
        log.warning("%s exists but its checksum differs; downloading it again", dest)
        dest.unlink()
    failures, last_error = 0, None
    while True:
        before = part.stat().st_size if part.exists() else 0
        try:
            _fetch_once(url, part, timeout=timeout, chunk=chunk)
            break
        except _Retry as exc:
            last_error = exc
        # Only attempts that added no bytes count against `retries`: a flaky link that moves
        # forward each time still finishes, and one that never does stops after `retries`.
        grew = part.exists() and part.stat().st_size > before
        failures = 0 if grew else failures + 1
        if failures > retries:
            raise DataError(
                f"Download of {url} failed after {retries + 1} attempts without progress (last error: "
                f"{last_error}). Fix: check the network or the URL and rerun; the "
                f"{part.stat().st_size if part.exists() else 0} bytes already in {part} are resumed."
            )
        log.warning("download of %s interrupted (%s); retrying", url, last_error)
        time.sleep(min(backoff * 2 ** max(failures - 1, 0), 30.0))
    _digests_match(part, url, expected_md5, expected_sha256, delete_on_mismatch=part)
    part.replace(dest)
    if not (expected_md5 or expected_sha256):
        digest = _file_digests(dest)["sha256"]
        sidecar = dest.with_name(dest.name + ".sha256")
        sidecar.write_text(f"{digest}  {dest.name}\n")
        log.warning("no published checksum for %s; recorded its sha256 %s in %s", url, digest, sidecar)
    return dest


class _Retry(Exception):
    """An attempt that may succeed if repeated (network error, transient status)."""


def _fetch_once(url: str, part: Path, *, timeout: float, chunk: int) -> None:
    """One HTTP request that appends to (or restarts) `part`; returns when the file is complete."""
    offset = part.stat().st_size if part.exists() else 0
    # identity: a gzip-encoded body would make byte offsets and Content-Length disagree
    headers = {"Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        response = requests.get(url, headers=headers, stream=True, timeout=timeout)
    except requests.RequestException as exc:
        raise _Retry(str(exc)) from exc
    with response:
        if response.status_code == 416 and offset:
            # Nothing past our offset: complete if the server's total is our size, else start over.
            total = response.headers.get("Content-Range", "").rpartition("/")[2]
            if total.isdigit() and int(total) == offset:
                return
            part.unlink()
            raise _Retry(f"server refused range {offset}- (total {total or 'unknown'}); restarting")
        if response.status_code in _RETRY_STATUS:
            raise _Retry(f"HTTP {response.status_code}")
        if response.status_code not in (200, 206):
            raise DataError(
                f"Download of {url} failed: HTTP {response.status_code} {response.reason}. "
                "Fix: check the URL in tasks/download.py CATALOGUE (the publisher may have moved the file)."
            )
        if response.status_code == 206 and not response.headers.get("Content-Range", "").startswith(f"bytes {offset}-"):
            part.unlink(missing_ok=True)  # a range we did not ask for cannot be appended safely
            raise _Retry(f"unexpected Content-Range {response.headers.get('Content-Range')!r}; restarting")
        mode = "ab" if response.status_code == 206 else "wb"  # 200 = server ignored Range: from zero
        start = offset if mode == "ab" else 0
        length = response.headers.get("Content-Length")
        expected_end = start + int(length) if length and length.isdigit() else None
        try:
            with open(part, mode) as out, tqdm(total=expected_end, initial=start, unit="B", unit_scale=True,
                                               desc=part.name[: -len(".part")], disable=None, leave=False) as bar:
                for block in response.raw.stream(chunk, decode_content=False):
                    out.write(block)
                    bar.update(len(block))
        except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
            raise _Retry(str(exc)) from exc
    size = part.stat().st_size
    if expected_end is not None and size != expected_end:
        raise _Retry(f"connection closed at byte {size} of {expected_end}")


def _file_digests(path: Path) -> dict[str, str]:
    md5, sha256 = hashlib.md5(usedforsecurity=False), hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            md5.update(block)
            sha256.update(block)
    return {"md5": md5.hexdigest(), "sha256": sha256.hexdigest()}


def _digests_match(path: Path, url: str, md5: str | None, sha256: str | None, *, delete_on_mismatch: Path | None) -> bool:
    """True if `path` has the expected digests (or none are expected); raises if told to delete."""
    if not (md5 or sha256):
        return True
    actual = _file_digests(path)
    wrong = [(kind, want, actual[kind]) for kind, want in (("md5", md5), ("sha256", sha256))
             if want and want.lower() != actual[kind]]
    if not wrong:
        return True
    if delete_on_mismatch is None:
        return False
    delete_on_mismatch.unlink(missing_ok=True)
    detail = "; ".join(f"expected {kind} {want}, got {got}" for kind, want, got in wrong)
    raise DataError(
        f"Checksum mismatch for {url}: {detail}. The partial file was deleted. Fix: rerun the download; "
        "if it mismatches again the publisher changed the file, so check its page and update CATALOGUE."
    )


# --- datasets ---------------------------------------------------------------------------------


def manual_instructions(name: str, source: Source, root: Path) -> str:
    return (
        f"{name} cannot be downloaded automatically: its licence needs a person.\n"
        f"  1. Go to {source.page}\n"
        f"  2. {source.manual}\n"
        f"  3. Arrange the files as {root}/{source.layout}\n"
        f"  4. Check them with: medtl data verify {name} --root {root / source.folder}\n"
        f"Licence: {source.licence}"
    )


def download_dataset(name: str, root: Path | str, *, catalogue: dict[str, Source] | None = None,
                     keep_archive: bool = False, **options) -> Path:
    """Download and unpack dataset `name` under `root`; returns the path to pass as --data-root.

    Skips the work when a previous run completed (a `.medtl-<key>.json` marker under root).
    Raises ManualDownloadRequired with the instructions for datasets behind a licence form.
    """
    catalogue = CATALOGUE if catalogue is None else catalogue
    key = catalogue_key(name, **options)
    if key not in catalogue:
        raise DataError(
            f"No download recipe for {key!r}. Known: {', '.join(k for k in sorted(catalogue) if ':' not in k)}, "
            "medmnist (with --option flag=<flag> [--option size=64|128|224]). For other data, put it under a "
            "folder yourself and use the class-folders or csv dataset."
        )
    source, root = catalogue[key], Path(root)
    if source.manual:
        raise ManualDownloadRequired(key, manual_instructions(key, source, root))
    target = root / source.folder
    marker = root / f".medtl-{key.replace(':', '-')}.json"
    if marker.exists() and target.exists():
        log.info("%s already downloaded to %s", key, target)
        return target
    root.mkdir(parents=True, exist_ok=True)
    extracted: list[str] = []
    for remote in source.files:
        try:
            path = download(remote.url, root / remote.filename, expected_md5=remote.md5, expected_sha256=remote.sha256)
        except DataError as exc:
            if not remote.optional:
                raise
            log.warning("optional file skipped: %s", exc)
            continue
        if remote.archive != "none":
            extracted += safe_extract(path, root)
            if not keep_archive:
                path.unlink()  # multi-GB archives would double the disk use
    if not target.exists():
        tops = sorted({PurePosixPath(n).parts[0] for n in extracted if PurePosixPath(n).parts})
        raise DataError(
            f"{key}: expected {target} after unpacking, but the archive holds {tops[:10]}. Fix: pass the right "
            f"folder under {root} as --data-root and report the new layout so CATALOGUE can be updated."
        )
    marker.write_text(json.dumps({"name": key, "folder": source.folder, "files": [f.url for f in source.files]}))
    return target

"""Where each dataset comes from, and a resumable, checksummed, safe downloader.

    medtl data download kvasir-v2 --root ~/data
    medtl data download medmnist --root ~/data --option flag=breastmnist --option size=64
    python -m benchmark.data_cli download chest-xray --root ~/data   # prints what to do by hand

Each dataset's card (`tasks.data.cards.DatasetCard`, beside its adapter) says where it comes from:
public files (URL, published checksum, archive type, the folder they extract to) or, where a
licence form or registration stands in the way, the page to visit and the folder layout to create.
`download_dataset` reads the cards; `download` and `safe_extract` are the two steps, usable on
their own.

A host that takes the connection and never answers (or never connects) is given up after one
timeout, `$MEDTL_DOWNLOAD_TIMEOUT` seconds (default 20, `tracking.settings`); a transfer that stops
moving is retried until it has made no progress for twice that, so a dead download ends in well
under a minute with the URL and the fix.

Own code rather than a library: `torchvision.datasets.utils.download_url` neither resumes nor
checks archives for path traversal, and `medmnist` downloads only its own files.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path, PurePosixPath
from urllib.parse import urlparse

import requests
import urllib3
from tqdm import tqdm

from tasks.data.archives import safe_extract  # noqa: F401  (part of this module's API: download, then extract)
from tasks.data.cards import Source
from tasks.data.errors import DataError
from tasks.data.registry import DATASETS
from tracking import settings

log = logging.getLogger(__name__)



class ManualDownloadRequired(DataError):
    """The dataset's licence needs a person (form, registration, agreement); `instructions` says how."""

    def __init__(self, name: str, instructions: str) -> None:
        self.name = name
        self.instructions = instructions
        super().__init__(instructions)


def download_catalogue() -> dict[str, Source]:
    """Every downloadable dataset (or variant, `medmnist:<flag>[_<size>]`) from the dataset cards."""
    entries: dict[str, Source] = {}
    for name, entry in DATASETS.items():
        if entry.card.source is not None:
            entries[name] = entry.card.source
        if entry.card.variants is not None:
            entries.update(entry.card.variants())
    return entries


def catalogue_key(name: str, **options) -> str:
    """The catalogue entry a dataset name and its options mean (`medmnist` + flag/size -> one file)."""
    card = DATASETS.get(name).card if name in DATASETS else None
    if card is not None and card.variant_key is not None:
        return card.variant_key(options)
    return name


# --- download ---------------------------------------------------------------------------------

_RETRY_STATUS = {408, 429, 500, 502, 503, 504}  # transient; anything else 4xx/5xx will not improve


def download(
    url: str,
    dest: Path | str,
    *,
    expected_md5: str | None = None,
    expected_sha256: str | None = None,
    timeout: float | None = None,
    chunk: int = 1 << 20,
    retries: int = 5,
    backoff: float = 2.0,
) -> Path:
    """Fetch `url` to `dest`, resuming `dest.part` with a Range request after an interruption.

    Verifies the digest(s) given; with none given it writes `<dest>.sha256` so later runs (and
    the catalogue) can pin it. Raises DataError on a mismatch (the part file is deleted), when the
    host does not connect or answer within `timeout` seconds (default `$MEDTL_DOWNLOAD_TIMEOUT`, 20),
    or when `retries` further attempts, or 2 x `timeout` seconds, passed without a new byte.
    """
    timeout = settings.read("MEDTL_DOWNLOAD_TIMEOUT") if timeout is None else float(timeout)
    host = urlparse(url).netloc or url
    dest = Path(dest)
    part = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists():
        if _digests_match(dest, url, expected_md5, expected_sha256, delete_on_mismatch=None):
            log.info("%s already downloaded", dest)
            return dest
        log.warning("%s exists but its checksum differs; downloading it again", dest)
        dest.unlink()
    failures, last_error, unreachable, last_progress = 0, None, 0, time.monotonic()
    while True:
        before = part.stat().st_size if part.exists() else 0
        try:
            _fetch_once(url, part, timeout=timeout, chunk=chunk)
            break
        except _Silent as exc:
            # The whole timeout already passed without an answer: a second wait would only double it.
            raise DataError(
                f"{host} {exc} while downloading {url}. Fix: check the URL and that no proxy or firewall holds the "
                f"request (HTTPS_PROXY); on a slow link raise MEDTL_DOWNLOAD_TIMEOUT (seconds, now {timeout:g}); or "
                f"fetch the file by hand into {dest} and rerun (it is then verified)."
            ) from None
        except _Unreachable as exc:
            # No answer at all (offline, DNS, refused, firewalled): retrying for a minute helps nobody.
            unreachable += 1
            if unreachable > UNREACHABLE_RETRIES:
                raise DataError(
                    f"Cannot reach {host} to download {url} ({exc}). Fix: check the network connection or proxy "
                    f"(HTTPS_PROXY) and rerun; or fetch the file by hand into {dest} and rerun (it is then verified)."
                ) from None
            time.sleep(min(backoff, 1.0))
            continue
        except _Retry as exc:
            last_error = exc
        # Only attempts that added no bytes count against `retries`: a flaky link that moves
        # forward each time still finishes, and one that never does stops after `retries`.
        grew = part.exists() and part.stat().st_size > before
        failures = 0 if grew else failures + 1
        last_progress = time.monotonic() if grew else last_progress
        pause = min(backoff * 2 ** max(failures - 1, 0), 30.0)
        stalled = time.monotonic() + pause - last_progress
        if failures and stalled > STALL_FACTOR * timeout:
            raise DataError(
                f"Download of {url} made no progress for {stalled:.0f} s ({failures} attempt(s); last error: "
                f"{last_error}). Fix: check the network or the URL and rerun (a slow link: raise "
                f"MEDTL_DOWNLOAD_TIMEOUT, now {timeout:g} s); the {part.stat().st_size if part.exists() else 0} "
                f"bytes already in {part} are resumed."
            )
        if failures > retries:
            raise DataError(
                f"Download of {url} failed after {retries + 1} attempts without progress (last error: "
                f"{last_error}). Fix: check the network or the URL and rerun; the "
                f"{part.stat().st_size if part.exists() else 0} bytes already in {part} are resumed."
            )
        log.warning("download of %s interrupted (%s); retrying", url, last_error)
        time.sleep(pause)
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


class _Unreachable(_Retry):
    """No HTTP answer at all: the host cannot be resolved or refuses the connection (both instant)."""


class _Silent(Exception):
    """The host did not connect, or connected and sent no answer, within the whole timeout."""


UNREACHABLE_RETRIES = 1  # one more try after an instant refusal (a blip), then the error
STALL_FACTOR = 2.0  # give up after this many timeouts without a new byte (retries included)


def _fetch_once(url: str, part: Path, *, timeout: float, chunk: int) -> None:
    """One HTTP request that appends to (or restarts) `part`; returns when the file is complete."""
    offset = part.stat().st_size if part.exists() else 0
    # identity: a gzip-encoded body would make byte offsets and Content-Length disagree
    headers = {"Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        response = requests.get(url, headers=headers, stream=True, timeout=(timeout, timeout))
    except requests.ReadTimeout as exc:
        raise _Silent(f"accepted the connection but sent no answer in {timeout:g} s") from exc
    except requests.ConnectionError as exc:
        reason = getattr(exc.args[0], "reason", None) if exc.args else None
        # NewConnectionError subclasses ConnectTimeoutError in urllib3, so it is tested first.
        if isinstance(reason, urllib3.exceptions.NewConnectionError):
            raise _Unreachable(str(reason)) from exc  # DNS, refused: nobody answered, at once
        if isinstance(exc, requests.ConnectTimeout) or isinstance(reason, urllib3.exceptions.ConnectTimeoutError):
            raise _Silent(f"did not accept a connection in {timeout:g} s") from exc  # unroutable, firewalled
        raise _Retry(str(exc)) from exc
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
                "Fix: check the URL in the dataset's card (tasks/data/adapters/) (the publisher may have moved the file)."
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
        "if it mismatches again the publisher changed the file, so check its page and update the dataset's card."
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
    key = catalogue_key(name, **options)
    catalogue = download_catalogue() if catalogue is None else catalogue
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
            f"folder under {root} as --data-root and report the new layout so the dataset's card can be updated."
        )
    marker.write_text(json.dumps({"name": key, "folder": source.folder, "files": [f.url for f in source.files]}))
    return target

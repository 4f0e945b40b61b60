"""Safe archive extraction: zip and tar, every member checked before anything is written.

    >>> safe_extract("kvasir-dataset-v2.zip", "data/")

Python's `extractall` trusts member names; a hostile or broken archive can write outside the
destination with an absolute path, a `..` component or a link. These checks refuse such an entry
and name it, so nothing lands outside `dest`.
"""

from __future__ import annotations

import os
import tarfile
import zipfile
from pathlib import Path

from tasks.data.errors import DataError


def safe_extract(archive: Path | str, dest: Path | str) -> list[str]:
    """Unpack a zip or tar(.gz/.bz2/.xz) into `dest`; returns the member names.

    Every member is checked before anything is written: absolute paths, `..` components and
    links that resolve outside `dest` raise DataError naming the archive and the entry.
    """
    archive, dest = Path(archive), Path(dest)
    root = Path(os.path.realpath(dest))
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            names = zf.namelist()
            for name in names:
                _check_member(archive, root, name)
            dest.mkdir(parents=True, exist_ok=True)
            zf.extractall(dest)
        return names
    if tarfile.is_tarfile(archive):
        with tarfile.open(archive, "r:*") as tf:
            members = tf.getmembers()
            for member in members:
                _check_tar_member(archive, root, member)
            dest.mkdir(parents=True, exist_ok=True)
            # The 'data' filter (3.11.4+) re-checks at write time and drops setuid bits / devices.
            try:
                if hasattr(tarfile, "data_filter"):
                    tf.extractall(dest, members=members, filter="data")
                else:  # pragma: no cover - older Pythons rely on our own checks above
                    tf.extractall(dest, members=members)
            except tarfile.FilterError as exc:
                raise DataError(
                    f"Stopped extracting {archive} at entry {exc.tarinfo.name!r}: tarfile's data filter refused it "
                    f"({exc}). Entries before it were written under {dest}. Fix: delete {dest} and get the "
                    "archive from the publisher's page again."
                ) from exc
        return [m.name for m in members]
    raise DataError(f"{archive} is neither a zip nor a tar archive. Fix: delete it and download it again.")


def _unsafe(archive: Path, name: str, why: str) -> DataError:
    return DataError(
        f"Refusing to extract {archive}: entry {name!r} {why}. Nothing was written. "
        "Fix: get the archive from the publisher's page again; a genuine release never does this."
    )


def _check_member(archive: Path, root: Path, name: str) -> Path:
    normal = name.replace("\\", "/")
    if normal.startswith("/") or (len(normal) > 1 and normal[1] == ":"):
        raise _unsafe(archive, name, "has an absolute path")
    if ".." in normal.split("/"):
        raise _unsafe(archive, name, "has a '..' component")
    target = Path(os.path.realpath(root / normal))
    if not target.is_relative_to(root):
        raise _unsafe(archive, name, "resolves outside the destination (through an existing link)")
    return target


def _check_tar_member(archive: Path, root: Path, member: tarfile.TarInfo) -> None:
    _check_member(archive, root, member.name)
    if member.issym() or member.islnk():
        link = member.linkname.replace("\\", "/")
        if link.startswith("/"):
            raise _unsafe(archive, member.name, f"is a link to the absolute path {member.linkname!r}")
        # symlinks are relative to the member's folder, hard links to the archive root
        base = (root / member.name).parent if member.issym() else root
        if not Path(os.path.realpath(base / link)).is_relative_to(root):
            raise _unsafe(archive, member.name, f"is a link to {member.linkname!r}, outside the destination")
    elif not (member.isfile() or member.isdir()):
        raise _unsafe(archive, member.name, "is a device or FIFO")

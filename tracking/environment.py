"""Tags that say where and with what a run was made: git sha, library versions, device."""

from __future__ import annotations

import os
import platform
import subprocess
from functools import lru_cache
from importlib import metadata
from pathlib import Path

LIBRARIES = ("torch", "torchvision", "lightning", "torchmetrics", "timm", "mlflow", "optuna", "albumentations", "numpy", "pandas", "scikit-learn")


# The checkout medtl runs from, not the working directory: suites are often run from a data or
# results folder, which may be another repository or none.
SOURCE_DIR = Path(__file__).resolve().parent


@lru_cache(maxsize=1)
def git_sha() -> str:
    """HEAD of medtl's own checkout (`-dirty` with uncommitted changes), else the installed version."""
    try:
        git = dict(capture_output=True, text=True, timeout=5, cwd=SOURCE_DIR)
        top = subprocess.run(["git", "rev-parse", "--show-toplevel"], check=True, **git).stdout.strip()
        if Path(top).resolve() != SOURCE_DIR.parent:
            # An installed copy inside some other repository (e.g. a project's .venv): that
            # repository's sha would be a wrong provenance, so report the release instead.
            raise subprocess.SubprocessError("not medtl's checkout")
        out = subprocess.run(["git", "rev-parse", "HEAD"], check=True, **git)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], **git)
        return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return f"release-{_version('medtl')}"


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "absent"


def device_description() -> str:
    import torch

    if torch.cuda.is_available():
        return f"cuda:{torch.cuda.get_device_name(0)} x{torch.cuda.device_count()}"
    return f"cpu:{platform.processor() or platform.machine()} threads={torch.get_num_threads()} cores={os.cpu_count()}"


@lru_cache(maxsize=1)
def environment_tags() -> dict[str, str]:
    tags = {"medtl.git_sha": git_sha(), "medtl.device": device_description(), "medtl.python": platform.python_version()}
    tags.update({f"medtl.version.{lib}": _version(lib) for lib in LIBRARIES})
    return tags

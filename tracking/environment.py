"""Tags that say where and with what a run was made: git sha, library versions, device."""

from __future__ import annotations

import os
import platform
import subprocess
from functools import lru_cache
from importlib import metadata

LIBRARIES = ("torch", "torchvision", "lightning", "torchmetrics", "timm", "mlflow", "optuna", "albumentations", "numpy", "pandas", "scikit-learn")


@lru_cache(maxsize=1)
def git_sha() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True, timeout=5)
        return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


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

"""Builders of tiny datasets in their publishers' real layouts, for the adapter tests.

Images are 16x16 PNG/JPEG files whose colour encodes their class, so a test can tell that a file
was labelled from the right folder.
"""

from __future__ import annotations

import io
import os
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
FIXTURES = Path(os.environ.get("MEDTL_FIXTURES", REPO.parent / "shared" / "data"))


@lru_cache(maxsize=64)
def image_bytes(shade: int = 128, fmt: str = "JPEG", mode: str = "RGB", size: int = 16) -> bytes:
    """An encoded uniform image; cached, so writing thousands of files costs only the writes."""
    array = np.full((size, size, 3), shade % 256, dtype=np.uint8)
    img = Image.fromarray(array).convert(mode)
    buffer = io.BytesIO()
    img.save(buffer, fmt)
    return buffer.getvalue()


def write_image(path: Path, shade: int = 128, fmt: str = "JPEG", mode: str = "RGB") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(image_bytes(shade, fmt, mode))
    return path


def write_class_folders(root: Path, counts: dict[str, int], *, suffix: str = ".jpg", mode: str = "RGB") -> Path:
    """`root/<class>/<class>_<i><suffix>` with `counts[class]` images; class i is painted 10*i + 5."""
    for i, (cls, n) in enumerate(counts.items()):
        for j in range(n):
            write_image(root / cls / f"{Path(cls).name}_{j}{suffix}", shade=10 * i + 5, mode=mode)
    return root


def class_counts(task) -> dict[str, int]:
    """{class name: number of index rows} for a single-label task."""
    labels = task.index["label"].to_numpy()
    return {name: int((labels == i).sum()) for i, name in enumerate(task.meta.class_names)}

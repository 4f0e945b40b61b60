"""Generated data: the embedded default, deterministic from a seed, no download.

Three datasets with a planted transfer effect (so the smoke leaderboard means something):

- `gen-general`  "natural" source: 16 classes of oriented gratings (8 orientations x 2 spatial
                 frequencies) on smooth coloured clutter, like a small ImageNet of edges.
- `gen-medical`  "medical-like" source: 6 classes on a pink tissue background: 4 vessel-like
                 gratings at orientations between the general ones, plus 2 classes of blobs.
- `gen-target`   the small, imbalanced target: 4 classes told apart only by the orientation of a
                 faint grating (0, 45, 90, 135 degrees, one of the general source's frequencies)
                 on the tissue background under heavy noise and a distractor blob.

The target's classes are a subset of the general source's and neighbours of the medical source's,
so features learned on either source transfer; a network trained from scratch on ~100 target
images sees too few examples to find them. A pretrained row that does not beat scratch therefore
means the weights did not reach the fine-tuning cell.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from tasks.data.cards import DatasetCard
from tasks.data.images import ArrayStore
from tasks.data.index import Task, TaskMeta, make_index
from tasks.data.registry import register_dataset

GENERAL_ORIENTATIONS = tuple(np.arange(8) * 22.5)
FREQUENCIES = (0.12, 0.25)  # cycles per pixel
TARGET_ORIENTATIONS = (0.0, 45.0, 90.0, 135.0)
TARGET_COUNTS = (60, 36, 24, 16)  # imbalanced like most small medical sets (ratio ~4:1)


def _rng(name: str, seed: int) -> np.random.Generator:
    # Derive a stream per dataset so changing one dataset never shifts another's images.
    digest = hashlib.sha256(f"{name}:{seed}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    return yy, xx


def _grating(rng, size: int, theta_deg: float, freq: float, radius: float) -> np.ndarray:
    """A Gabor patch (grating under a Gaussian window) at a random place and phase, in [-1, 1]."""
    yy, xx = _grid(size)
    cy, cx = rng.uniform(size * 0.3, size * 0.7, size=2)
    theta = np.deg2rad(theta_deg + rng.normal(0, 4))
    u = (xx - cx) * np.cos(theta) + (yy - cy) * np.sin(theta)
    envelope = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * radius**2))
    return np.cos(2 * np.pi * freq * u + rng.uniform(0, 2 * np.pi)) * envelope


def _blob(rng, size: int, ring: bool) -> np.ndarray:
    yy, xx = _grid(size)
    cy, cx = rng.uniform(size * 0.25, size * 0.75, size=2)
    r = rng.uniform(size * 0.12, size * 0.22)
    d = np.sqrt((xx - cx) ** 2 + (yy - cy) ** 2)
    return np.exp(-((d - r) ** 2) / 4.0) if ring else np.exp(-(d**2) / (2 * (r / 1.5) ** 2))


def _clutter(rng, size: int) -> np.ndarray:
    """Smooth random colour field, (size, size, 3) in [0, 1]: a stand-in for natural backgrounds."""
    coarse = rng.uniform(0, 1, size=(4, 4, 3))
    reps = int(np.ceil(size / 4))
    field = np.kron(coarse, np.ones((reps, reps, 1)))[:size, :size]
    return 0.6 * field + 0.2


def _tissue(rng, size: int) -> np.ndarray:
    """Pinkish background with low-frequency mottling, like an endoscopy or histology field."""
    base = np.array([0.75, 0.45, 0.45]) + rng.normal(0, 0.04, size=3)
    mottling = _clutter(rng, size)[:, :, :1] * 0.2 - 0.1
    return np.clip(base[None, None, :] + mottling, 0, 1)


def _compose(background: np.ndarray, pattern: np.ndarray, contrast: float, noise: float, rng) -> np.ndarray:
    img = background + contrast * pattern[:, :, None] + rng.normal(0, noise, size=background.shape)
    return (np.clip(img, 0, 1) * 255).round().astype(np.uint8)


def _general(size: int, per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    rng = _rng("gen-general", seed)
    names, images, labels = [], [], []
    classes = [(o, f) for f in FREQUENCIES for o in GENERAL_ORIENTATIONS]
    for cls, (theta, freq) in enumerate(classes):
        names.append(f"grating_{theta:g}deg_f{freq:g}")
        for _ in range(per_class):
            pattern = _grating(rng, size, theta, freq, radius=size * 0.3)
            images.append(_compose(_clutter(rng, size), pattern, 0.35, 0.06, rng))
            labels.append(cls)
    return np.stack(images), np.asarray(labels), names


def _medical(size: int, per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    rng = _rng("gen-medical", seed)
    names, images, labels = [], [], []
    vessels = [22.5, 67.5, 112.5, 157.5]
    for cls, theta in enumerate(vessels):
        names.append(f"vessel_{theta:g}deg")
        for _ in range(per_class):
            pattern = _grating(rng, size, theta, FREQUENCIES[1], radius=size * 0.3)
            images.append(_compose(_tissue(rng, size), pattern, 0.3, 0.06, rng))
            labels.append(cls)
    for cls, ring in ((4, True), (5, False)):
        names.append("ring" if ring else "blob")
        for _ in range(per_class):
            pattern = -_blob(rng, size, ring)
            images.append(_compose(_tissue(rng, size), pattern, 0.35, 0.06, rng))
            labels.append(cls)
    return np.stack(images), np.asarray(labels), names


def _target(size: int, scale: float, seed: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    rng = _rng("gen-target", seed)
    names, images, labels = [], [], []
    counts = [max(4, int(round(c * scale))) for c in TARGET_COUNTS]
    for cls, (theta, count) in enumerate(zip(TARGET_ORIENTATIONS, counts)):
        names.append(f"lesion_{theta:g}deg")
        for _ in range(count):
            pattern = _grating(rng, size, theta, FREQUENCIES[1], radius=size * 0.25)
            pattern = pattern - 0.5 * _blob(rng, size, ring=bool(rng.integers(2)))  # distractor
            images.append(_compose(_tissue(rng, size), pattern, 0.14, 0.12, rng))
            labels.append(cls)
    return np.stack(images), np.asarray(labels), names


def _task(name: str, arrays: tuple[np.ndarray, np.ndarray, list[str]], seed: int) -> Task:
    images, labels, names = arrays
    meta = TaskMeta(name, tuple(names), "binary" if len(names) == 2 else "multiclass")
    return Task(meta, make_index(range(len(labels)), labels), ArrayStore(images, origin=f"{name} seed {seed}"))


def _card(summary: str) -> DatasetCard:
    return DatasetCard(summary=summary, layout="generated in memory from a seed (options `size`, `seed`, `per_class` / `scale`)")


@register_dataset("gen-general", card=_card("generated natural-like source: 16 classes of oriented gratings on clutter"))
def gen_general(root: Path | None = None, *, size: int = 32, per_class: int = 80, seed: int = 0) -> Task:
    """`root` is ignored: generated data lives in memory."""
    return _task("gen-general", _general(size, per_class, seed), seed)


@register_dataset("gen-medical", card=_card("generated medical-like source: 6 classes of vessels and blobs on tissue"))
def gen_medical(root: Path | None = None, *, size: int = 32, per_class: int = 160, seed: int = 0) -> Task:
    return _task("gen-medical", _medical(size, per_class, seed), seed)


@register_dataset("gen-target", card=_card("generated small imbalanced target: 4 faint lesion orientations"))
def gen_target(root: Path | None = None, *, size: int = 32, scale: float = 1.0, seed: int = 0) -> Task:
    """`scale` multiplies the class counts (60/36/24/16 at 1.0) for bigger or tinier variants."""
    return _task("gen-target", _target(size, scale, seed), seed)

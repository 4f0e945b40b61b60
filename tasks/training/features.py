"""Frozen features of a backbone tap, extracted once per content and cached on disk.

    >>> feats = tap_features(task, backbone, tap="block5_pool", scale=224, pool="gap")  # (N, C), all rows

The frozen-feature strategies (`strategies/svm.py`, `strategies/vlad.py`) read a tap's output for
every row of a task, in index order, so one extraction serves every fold, seed, fraction and SVM
setting. An entry is keyed by content, not by names:

  dataset        the index's items in order and each image's bytes (file bytes, or the array rows)
  weights        every tensor of the backbone's state dict (parameters and BatchNorm buffers)
  tap, scale     the tapped module and the square input side
  pool           "gap" (global average over the map: (N, C)) or "map" (the map itself: (N, C, H, W))
  preprocessing  resize + normalise with the backbone's mean/std, and the library versions doing it

so a changed image or weight file makes a new entry (an old one is never served), and entries
survive across suite invocations. The folder is a machine setting, not part of a cell's identity:
`$MEDTL_CACHE/features`, else `.medtl_cache/features` under the working directory. Each entry is
`<key>.npy` plus `<key>.json` (what it holds and the extraction's seconds per image, which the
strategies report as the test pipeline's cost when they read features from the cache).

Extraction is float32, eval mode, under `torch.inference_mode`: the backbone's parameters and
BatchNorm statistics are left bit-identical, and its train/eval mode is restored afterwards.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from backbones import Backbone
from backbones.registry import backbone_entry
from tasks.data.adapters.medical_source import CompositeStore
from tasks.data.datamodule import IndexedImages
from tasks.data.images import ArrayStore, FileStore
from tasks.data.index import Task
from tasks.data.transforms import eval_preset
from tracking import settings

FINAL = "final"  # the backbone's own output (its pooled feature vector) rather than a named tap
FORMAT = 1  # of cache entries; bump when extraction changes what an entry holds
POOLS = ("gap", "map")


def default_cache_dir() -> Path:
    """`$MEDTL_CACHE/features`, else `.medtl_cache/features` under the working directory."""
    return (settings.read("MEDTL_CACHE") or Path(".medtl_cache")) / "features"


# --- taps -----------------------------------------------------------------------------------------

def meta_backbone(name: str) -> Backbone:
    """Backbone `name` built on PyTorch's meta device: shapes without memory or weights (milliseconds)."""
    with torch.device("meta"):
        return backbone_entry(name).build()


def tap_shapes(backbone: Backbone, size: int) -> dict[str, tuple[int, ...]]:
    """Output shape (without the batch) of every tap and of `final` for a `size` px input, on the meta device."""
    if not isinstance(backbone, Backbone):
        raise TypeError(f"expected a Backbone, got {type(backbone).__name__}")
    probe = meta_backbone(backbone.name) if next(backbone.parameters()).device.type != "meta" else backbone
    shapes: dict[str, tuple[int, ...]] = {}
    hooks = [m.register_forward_hook(lambda _m, _i, out, k=k: shapes.__setitem__(k, tuple(out.shape[1:])))
             for k, m in probe.feature_taps().items()]
    try:
        with torch.no_grad():
            # Two images: a training-mode BatchNorm refuses one image whose map is 1x1 (ResNet-18 at 32 px).
            shapes[FINAL] = tuple(probe(torch.empty(2, 3, size, size, device="meta")).shape[1:])
    finally:
        for hook in hooks:
            hook.remove()
    return shapes


def spatial_taps(shapes: dict[str, tuple[int, ...]]) -> list[str]:
    """Taps whose output is a (C, H, W) map: each spatial position is a C-dim local descriptor."""
    return [name for name, shape in shapes.items() if len(shape) == 3]


# --- content digests -------------------------------------------------------------------------------

_FILE_DIGESTS: dict[tuple[str, int, int], str] = {}  # (path, size, mtime_ns) -> digest, within one process


def _file_digest(path: Path) -> str:
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _FILE_DIGESTS:
        _FILE_DIGESTS[key] = hashlib.blake2b(path.read_bytes(), digest_size=16).hexdigest()
    return _FILE_DIGESTS[key]


def _item_digests(store, items: list) -> list[str]:
    """One digest per item of what `store.load(item)` decodes from."""
    if isinstance(store, FileStore):
        return [_file_digest(store.root / str(item)) for item in items]
    if isinstance(store, ArrayStore):
        return [hashlib.blake2b(np.ascontiguousarray(store.array[int(i)]).tobytes()
                                + str(store.array[int(i)].shape).encode(), digest_size=16).hexdigest() for i in items]
    if isinstance(store, CompositeStore):
        out = []
        for item in items:
            prefix, _, rest = str(item).partition(":")
            out += _item_digests(store.stores[prefix], [rest]) if prefix in store.stores else [str(item)]
        return out
    # An unknown store: hash the decoded pixels (costs a decode, but is always right).
    return [hashlib.blake2b(store.load(item).tobytes(), digest_size=16).hexdigest() for item in items]


def task_digest(task: Task) -> str:
    """Content hash of a task's images in index order (items and the bytes behind them)."""
    items = task.index["item"].tolist()
    h = hashlib.blake2b(digest_size=16)
    for item, digest in zip(items, _item_digests(task.images, items)):
        h.update(f"{item}\0{digest}\n".encode())
    return h.hexdigest()


def weights_digest(module: nn.Module) -> str:
    """Content hash of every tensor of `module`'s state dict (names, dtypes, shapes, values)."""
    h = hashlib.blake2b(digest_size=16)
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}\0{t.dtype}\0{tuple(t.shape)}\n".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def content_digests(task: Task, backbone: Backbone) -> dict[str, str]:
    """The dataset and weights halves of a cache key; compute once per cell, pass to each scale's lookup."""
    return {"dataset": task_digest(task), "weights": weights_digest(backbone)}


def cache_key(task: Task, backbone: Backbone, *, tap: str, scale: int, pool: str,
              digests: dict[str, str] | None = None) -> tuple[str, dict]:
    """(key, description) of the cache entry for these features; see the module docstring."""
    import albumentations

    config = backbone.input_config
    digests = digests or content_digests(task, backbone)
    description = {
        "format": FORMAT,
        "task": task.meta.name,
        "rows": len(task.index),
        "dataset": digests["dataset"],
        "backbone": backbone.name,
        "weights": digests["weights"],
        "tap": tap,
        "scale": int(scale),
        "pool": pool,
        "preprocessing": {"resize": "albumentations.Resize", "mean": list(config.mean), "std": list(config.std),
                          "albumentations": albumentations.__version__, "torch": torch.__version__},
    }
    text = json.dumps(description, sort_keys=True)
    return hashlib.blake2b(text.encode(), digest_size=20).hexdigest(), description


# --- extraction --------------------------------------------------------------------------------------

class _TapReached(Exception):
    """Raised by the tap's hook to stop the forward pass: the layers after the tap are not needed."""


@dataclass(frozen=True)
class Features:
    """One cache entry, loaded."""

    array: np.ndarray  # (N, C) or (N, C, H, W) float32, rows in task index order
    seconds_per_image: float  # decode + resize + forward per image when the entry was extracted
    cached: bool  # read from the cache (True) or extracted by this call (False)
    key: str  # the entry's content key


def forward_tap(backbone: Backbone, x: torch.Tensor, tap: str) -> torch.Tensor:
    """The output of `tap` (or the backbone's own output for `final`) for the batch `x`."""
    if tap == FINAL:
        return backbone(x)
    taps = backbone.feature_taps()
    if tap not in taps:
        raise ValueError(f"Backbone {backbone.name!r} has no feature tap {tap!r}. Valid taps: "
                         f"{', '.join([*taps, FINAL])}.")
    captured: list[torch.Tensor] = []

    def hook(_module, _inputs, output):
        captured.append(output)
        raise _TapReached

    handle = taps[tap].register_forward_hook(hook)
    try:
        backbone(x)
    except _TapReached:
        pass
    finally:
        handle.remove()
    return captured[0]


def pool_output(output: torch.Tensor, pool: str) -> torch.Tensor:
    """`gap`: mean over the spatial positions of an (N, C, H, W) map, or over the tokens of (N, T, C);
    an (N, C) output is already pooled. `map`: the (N, C, H, W) output as it is."""
    if pool == "map":
        if output.ndim != 4:
            raise ValueError(f"expected an (N, C, H, W) feature map, got shape {tuple(output.shape)}")
        return output
    if output.ndim == 4:
        return output.mean(dim=(2, 3))
    if output.ndim == 3:
        return output.mean(dim=1)
    return output.flatten(1)


def _device(accelerator: str) -> torch.device:
    if accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def extract(task: Task, backbone: Backbone, *, tap: str, scale: int, pool: str, accelerator: str = "cpu",
            batch_size: int = 32, num_workers: int = 0) -> tuple[np.ndarray, float]:
    """Features of every row of `task` (index order) and the wall seconds per image (no cache)."""
    config = backbone.input_config
    loader = DataLoader(IndexedImages(task, np.arange(len(task.index)), eval_preset(size=scale, mean=config.mean, std=config.std)),
                        batch_size=batch_size, shuffle=False, num_workers=num_workers)
    device, was_training = _device(accelerator), backbone.training
    backbone.to(device).eval()
    chunks = []
    start = time.perf_counter()
    try:
        with torch.inference_mode():
            for images, _ in loader:
                chunks.append(pool_output(forward_tap(backbone, images.to(device), tap), pool).float().cpu().numpy())
    finally:
        backbone.train(was_training)
    seconds = time.perf_counter() - start
    return np.concatenate(chunks).astype(np.float32, copy=False), seconds / max(len(task.index), 1)


def tap_features(task: Task, backbone: Backbone, *, tap: str, scale: int, pool: str, cache_dir: Path | None = None,
                 accelerator: str = "cpu", batch_size: int = 32, num_workers: int = 0,
                 digests: dict[str, str] | None = None) -> Features:
    """Features of every row of `task` from the cache, extracting (and storing) them on a miss.

    `digests`: `content_digests(task, backbone)` when the caller already has them (several scales)."""
    if pool not in POOLS:
        raise ValueError(f"Unknown pool {pool!r}. Valid pools: {', '.join(POOLS)}.")
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    key, description = cache_key(task, backbone, tap=tap, scale=scale, pool=pool, digests=digests)
    array_path, meta_path = folder / f"{key}.npy", folder / f"{key}.json"
    if array_path.is_file() and meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        return Features(np.load(array_path), float(meta["seconds_per_image"]), True, key)
    array, seconds = extract(task, backbone, tap=tap, scale=scale, pool=pool, accelerator=accelerator,
                             batch_size=batch_size, num_workers=num_workers)
    folder.mkdir(parents=True, exist_ok=True)
    # Write-then-rename: two workers extracting the same entry never leave a half-written file behind.
    tmp = folder / f"{key}.{os.getpid()}.tmp.npy"
    np.save(tmp, array)
    os.replace(tmp, array_path)
    meta_tmp = folder / f"{key}.{os.getpid()}.tmp.json"
    meta_tmp.write_text(json.dumps({**description, "shape": list(array.shape), "seconds_per_image": seconds,
                                    "created": time.strftime("%Y-%m-%dT%H:%M:%S")}, indent=1))
    os.replace(meta_tmp, meta_path)
    return Features(array, seconds, False, key)

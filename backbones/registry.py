"""The one registry helper (timm's `@register_model`), and the backbone registry built on it.

Datasets (`tasks.data.registry`) and strategies (`tasks.training.strategies`) use the same
`Registry`: names are registered once at their definition site, a duplicate is refused, and an
unknown name is answered with the valid ones.
"""

from __future__ import annotations

import importlib
import pkgutil
from contextlib import contextmanager
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Generic, TypeVar

from backbones.backbone import Backbone
from backbones.errors import UnknownBackboneError, WeightsError
from backbones.weights import WeightSource, load_backbone_file, parse_weights

T = TypeVar("T")


class Registry(Generic[T]):
    """Name -> entry, filled by decorators where each entry is defined."""

    def __init__(self, kind: str, unknown: type[Exception] = KeyError) -> None:
        self.kind = kind  # "backbone", "dataset", "strategy": used in messages
        self.unknown = unknown  # the error an unknown name raises (a ValueError subclass, usually)
        self._entries: dict[str, T] = {}

    def add(self, name: str, entry: T) -> T:
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is registered twice; pick another name.")
        self._entries[name] = entry
        return entry

    def remove(self, name: str) -> None:
        """Forget `name` (tests and plugins that register something for a while)."""
        self._entries.pop(name, None)

    @contextmanager
    def swapped(self, name: str, entry: T) -> Iterator[None]:
        """Use `entry` for `name` inside the block, then restore what was there (tests)."""
        previous = self._entries.get(name)
        self._entries[name] = entry
        try:
            yield
        finally:
            if previous is None:
                self._entries.pop(name, None)
            else:
                self._entries[name] = previous

    def get(self, name: str) -> T:
        if name not in self._entries:
            raise self.unknown(f"Unknown {self.kind} {name!r}. Valid names: {', '.join(self.names())}.")
        return self._entries[name]

    def names(self) -> list[str]:
        return sorted(self._entries)

    def items(self) -> Iterator[tuple[str, T]]:
        return iter(sorted(self._entries.items()))

    def __contains__(self, name: object) -> bool:
        return name in self._entries


def import_submodules(package: str) -> None:
    """Import every module of `package`, so a new file there registers itself with no other edit."""
    module = importlib.import_module(package)
    for info in pkgutil.iter_modules(module.__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{package}.{info.name}")


class ImageNetWeights:
    """Where a library keeps an architecture's ImageNet weights, and how it loads them.

    Implementations (`backbones.imagenet`) read the library's own cache and fetch into it; offline
    with no cached copy they raise `WeightsError` naming the cache file and the command that fills it.
    """

    def cache_path(self) -> str:  # pragma: no cover - interface
        raise NotImplementedError

    def load_into(self, backbone: Backbone) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def provenance(self) -> str:
        """What the weights are, exactly: the library's id and, where the cache has one, its revision."""
        return "imagenet"

    def check(self, name: str) -> None:
        """Raise the offline error for backbone `name` now, before anything trains, when the weights are neither
        cached nor downloadable (downloads nothing). Default: nothing to check."""


class HubWeights:
    """A hub model's own published weights (`weights: hub`), read from the Hugging Face cache.

    The architecture itself comes from the same repository (its config), so `check` runs for every
    weight source of a hub backbone: offline with no cached copy it raises before anything trains.
    Implementation: `backbones.hub.TimmHubWeights`.
    """

    def check(self, source: WeightSource) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def load_into(self, backbone: Backbone) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def provenance(self) -> str:  # pragma: no cover - interface
        raise NotImplementedError


@dataclass(frozen=True)
class BackboneEntry:
    """A registered architecture."""

    build: Callable[[], Backbone]  # the architecture with random weights
    imagenet: ImageNetWeights | None = None  # its library's ImageNet weights; None: it has none
    family: str = ""  # library it comes from, for `medtl list`
    no_imagenet: str = ""  # why it has no ImageNet weights and what to use instead, for the error
    hub: HubWeights | None = None  # a hub model's own weights (`weights: hub`); None for every library architecture
    no_hub: str = ""  # what to write instead of `weights: hub` for this backbone, for the error


BACKBONES: Registry[BackboneEntry] = Registry("backbone", UnknownBackboneError)
# name prefix -> entry for any model of that library ("timm:<model>"), built on demand.
_FAMILIES: dict[str, Callable[[str], BackboneEntry]] = {}


def register_backbone(name: str, *, imagenet: ImageNetWeights | None = None, family: str = "", no_imagenet: str = ""):
    """Decorate a constructor `() -> Backbone` as backbone `name`."""

    def decorate(fn: Callable[[], Backbone]) -> Callable[[], Backbone]:
        BACKBONES.add(name, BackboneEntry(fn, imagenet, family, no_imagenet))
        return fn

    return decorate


def register_backbone_family(prefix: str, entry_for: Callable[[str], BackboneEntry]) -> None:
    """Make every `<prefix>:<model>` name a backbone; `entry_for(model)` raises for unknown models."""
    _FAMILIES[prefix] = entry_for


def backbone_entry(name: str) -> BackboneEntry:
    prefix, sep, model = name.partition(":")
    if sep and prefix in _FAMILIES:
        return _FAMILIES[prefix](model)
    return BACKBONES.get(name)


def list_backbones() -> list[str]:
    return BACKBONES.names()


def backbone_families() -> list[str]:
    return sorted(_FAMILIES)


@lru_cache(maxsize=None)
def input_config(name: str):
    """The backbone's `InputConfig` (built once per process: suites read it to size their cells)."""
    return backbone_entry(name).build().input_config


def has_imagenet_weights(name: str) -> bool:
    return backbone_entry(name).imagenet is not None


def valid_weights(name: str) -> str:
    """The weight sources backbone `name` takes, for error messages."""
    entry = backbone_entry(name)
    kinds = ["scratch", *(["imagenet"] if entry.imagenet else []), *(["hub"] if entry.hub else [])]
    return ", ".join([*kinds, "file:<path>", "run:<mlflow run id>", "cell:<pretraining cell hash>"])


def check_weights(name: str, weights: str | WeightSource) -> None:
    """Refuse a backbone/weights pair that cannot load, before anything trains (suite validation).

    For `hub:` backbones this is also the cache check: offline with no cached copy of the model it
    raises the error naming the cache folder and the command that fills it (it downloads nothing).
    """
    entry = backbone_entry(name)
    source = parse_weights(weights) if isinstance(weights, str) else weights
    if source.kind == "imagenet" and entry.imagenet is None:
        raise WeightsError(f"Backbone {name!r} has no ImageNet weights in its library"
                           f"{': ' + entry.no_imagenet if entry.no_imagenet else ''}; use weights 'scratch' or 'file:<path>'.")
    if source.kind == "hub" and entry.hub is None:
        raise WeightsError(f"Weights 'hub' are a hub model's own published weights, for `hub:<id>` backbones only; "
                           f"{name!r} is not one{': ' + entry.no_hub if entry.no_hub else ''}. "
                           f"Valid weights for {name!r}: {valid_weights(name)}.")
    if entry.hub is not None:
        entry.hub.check(source)


def weights_provenance(name: str, weights: str | WeightSource) -> str:
    """Where `weights` for backbone `name` really come from, read from the caches (no network, nothing built).

    `scratch`; `hub:<repo id>@<commit>` for hub weights and for timm's pretrained tags (which are
    DINOv2, CLIP... as often as ImageNet); `torchvision:<Weights enum member>`; `file:`, `run:` and
    `cell:` as written (the benchmark follows `cell:` chains). The commit is the cached snapshot's;
    before the first download it is left out.
    """
    entry = backbone_entry(name)
    source = parse_weights(weights) if isinstance(weights, str) else weights
    if source.kind == "imagenet" and entry.imagenet is not None:
        return entry.imagenet.provenance()
    if source.kind == "hub" and entry.hub is not None:
        return entry.hub.provenance()
    return str(source)


Resolver = Callable[[WeightSource], WeightSource]


def create_backbone(name: str, weights: str | WeightSource = "scratch", *, resolve: Resolver | None = None) -> Backbone:
    """Build backbone `name` with `weights` (see `backbones.weights` for the sources).

    `run:` and `cell:` weights live in MLflow, which this layer does not know: the caller passes
    `resolve`, which turns them into `file:` sources (`benchmark.cell.weights.MlflowWeights`).
    """
    entry = backbone_entry(name)
    source = parse_weights(weights) if isinstance(weights, str) else weights
    asked = source  # `run:` / `cell:` stay the provenance, not the local file they resolve to
    if source.needs_resolver:
        if resolve is None:
            raise WeightsError(f"Weights {source} live in MLflow; run them through a suite (`medtl benchmark`), "
                               "which resolves them to the run's exported checkpoint.")
        source = resolve(source)
    check_weights(name, source)
    backbone = entry.build()
    if source.kind == "imagenet":
        entry.imagenet.load_into(backbone)
    elif source.kind == "hub":
        entry.hub.load_into(backbone)
    elif source.kind == "file":
        load_backbone_file(backbone, source.path)
    backbone.provenance = weights_provenance(name, asked)
    return backbone

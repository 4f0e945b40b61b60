"""Hugging Face Hub models as backbones: `hub:<repo id>[@<revision>]`, read from huggingface_hub's own cache.

    create_backbone("hub:timm/vit_small_patch14_dinov2.lvd142m", "hub")      # its published weights
    create_backbone("hub:timm/vit_small_patch14_dinov2.lvd142m", "scratch")  # its architecture alone
    hf download timm/vit_small_patch14_dinov2.lvd142m                        # fills the cache (online)

The cache is huggingface_hub's (`HF_HUB_CACHE`, default `$HF_HOME/hub`): where `hf download` and
`timm.create_model("hf-hub:<id>", pretrained=True)` put a model, so a machine that used either has
it. `HF_HUB_OFFLINE=1` is respected. A model is read from one snapshot folder (one commit of the
repository): timm builds it from that folder (its `local-dir:` source), so its config and weights
cannot come from two commits, and the commit is the weights' provenance (`hub:<id>@<sha>`).
Any repository timm can load works (a `config.json` naming a timm `architecture`, and
`model.safetensors` or `pytorch_model.bin`): timm's own uploads, and anyone's `push_to_hf_hub`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from backbones.backbone import Backbone
from backbones.errors import UnknownBackboneError, WeightsError
from backbones.imagenet import _check_head_only, _reachable
from backbones.registry import HubWeights
from backbones.weights import WeightSource

CONFIG = "config.json"  # timm's model config: architecture, model_args, pretrained_cfg
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")  # what timm publishes, in the order timm tries them


def _offline_mode() -> bool:
    from huggingface_hub import constants

    return constants.is_offline_mode()


@dataclass(frozen=True)
class HubModel:
    """One model repository on the Hugging Face Hub, at one revision."""

    repo_id: str  # "org/name", as on huggingface.co
    revision: str | None = None  # branch, tag or commit to read; None: the default branch (main)

    @classmethod
    def parse(cls, ref: str) -> HubModel:
        """`"timm/vit_small_patch14_dinov2.lvd142m@main"` -> HubModel; a malformed id names the fix."""
        from huggingface_hub.utils import HFValidationError, validate_repo_id

        repo_id, _, revision = ref.partition("@")
        try:
            validate_repo_id(repo_id)
        except HFValidationError as exc:
            raise UnknownBackboneError(f"'hub:{ref}' does not name a Hugging Face Hub model ({exc}). Write hub:<org>/<name>, "
                                       "optionally @<revision>, e.g. hub:timm/vit_small_patch14_dinov2.lvd142m.") from exc
        return cls(repo_id, revision or None)

    @property
    def name(self) -> str:
        return f"hub:{self.repo_id}" + (f"@{self.revision}" if self.revision else "")

    def cache_path(self) -> Path:
        """The repository's folder in the Hugging Face cache (huggingface_hub's layout)."""
        from huggingface_hub import constants

        return Path(constants.HF_HUB_CACHE) / ("models--" + self.repo_id.replace("/", "--"))

    def fetch_command(self) -> str:
        return f"hf download {self.repo_id}" + (f" --revision {self.revision}" if self.revision else "")

    def cached_snapshot(self, *, weights: bool) -> Path | None:
        """The cached snapshot folder with the config (and a weights file when `weights`); None when absent."""
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(self.repo_id, CONFIG, revision=self.revision)
        if not isinstance(found, str):  # None (never cached) or the "known missing" marker
            return None
        folder = Path(found).parent  # snapshots/<commit>/config.json
        if weights and not any((folder / name).is_file() for name in WEIGHT_FILES):
            return None
        return folder

    def offline_error(self, *, weights: bool, reason: object) -> WeightsError:
        files = ", ".join((CONFIG, *(WEIGHT_FILES[:1] if weights else ())))
        return WeightsError(
            f"Hub model {self.repo_id!r}{' at ' + self.revision if self.revision else ''} ({files}) is not in the "
            f"Hugging Face cache ({self.cache_path()}) and cannot be downloaded ({reason}). On a machine with "
            f"internet access run:\n  {self.fetch_command()}\n(or python -c \"import timm; timm.create_model("
            f"'hf-hub:{self.repo_id}', pretrained=True)\"), then copy {self.cache_path().name} into this machine's cache "
            "(HF_HUB_CACHE, default $HF_HOME/hub) or point HF_HUB_CACHE / HF_HOME at a cache that has it."
        )

    def check(self, *, weights: bool) -> None:
        """Raise the offline error now, before anything trains, when the files are neither cached nor downloadable.

        Downloads nothing: a cached copy passes at once; otherwise the hub must be reachable.
        """
        if self.cached_snapshot(weights=weights) is not None:
            return
        from huggingface_hub import constants

        if _offline_mode():
            raise self.offline_error(weights=weights, reason="HF_HUB_OFFLINE is set")
        try:
            _reachable(constants.ENDPOINT)
        except OSError as exc:
            raise self.offline_error(weights=weights, reason=f"{constants.ENDPOINT}: {exc}") from exc

    def snapshot(self, *, weights: bool) -> Path:
        """The snapshot folder holding the config (and a weights file when `weights`), downloaded when missing."""
        folder = self.cached_snapshot(weights=weights)
        if folder is not None:
            return folder
        self.check(weights=weights)
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import EntryNotFoundError

        try:
            folder = Path(hf_hub_download(self.repo_id, CONFIG, revision=self.revision)).parent
            for name in WEIGHT_FILES if weights else ():
                try:
                    # Pinned to the config's commit: a push between the two downloads cannot mix commits.
                    hf_hub_download(self.repo_id, name, revision=folder.name)
                    break
                except EntryNotFoundError:
                    continue
        except Exception as exc:  # noqa: BLE001 - network, auth or disk: all end in the same advice
            raise self.offline_error(weights=weights, reason=exc) from exc
        if weights and not any((folder / name).is_file() for name in WEIGHT_FILES):
            raise WeightsError(f"Hub model {self.repo_id!r} publishes none of {', '.join(WEIGHT_FILES)} (commit {folder.name}), "
                               "so timm cannot load its weights; use weights 'scratch' or another model.")
        return folder

    def provenance(self) -> str:
        """`hub:<id>@<commit>` of the cached weights; without the commit when nothing is cached yet."""
        folder = self.cached_snapshot(weights=True)
        return f"hub:{self.repo_id}@{folder.name}" if folder is not None else self.name


def read_config(model: HubModel, folder: Path) -> dict:
    """The snapshot's timm config; a repository timm cannot build is refused with what it is instead."""
    config = json.loads((folder / CONFIG).read_text(encoding="utf-8"))
    if "architecture" not in config:
        raise WeightsError(f"Hub model {model.repo_id!r} is not a timm model: its {folder / CONFIG} names no 'architecture' "
                           f"(keys: {', '.join(sorted(config)[:8])}). hub: backbones load through timm; pick a timm "
                           "version of the model (e.g. under huggingface.co/timm).")
    return config


def create_timm_model(model: HubModel, *, pretrained: bool):
    """timm's model from the snapshot folder, classifier removed (`num_classes=0`: pooled / CLS features).

    Fixed-size models (ViTs) are built with `dynamic_img_size`, timm's position-embedding
    interpolation, so any suite image size (down to one patch) works; at the native size it is the
    same network.
    """
    import timm

    folder = model.snapshot(weights=pretrained)
    config = read_config(model, folder)
    fixed = (config.get("pretrained_cfg") or config).get("fixed_input_size", False)
    name = f"local-dir:{folder}"
    if fixed:
        try:
            return timm.create_model(name, pretrained=pretrained, num_classes=0, dynamic_img_size=True)
        except TypeError:  # an architecture without dynamic sizes (e.g. some hierarchical ViTs): native size only
            pass
    return timm.create_model(name, pretrained=pretrained, num_classes=0)


class TimmHubWeights(HubWeights):
    """A `hub:` backbone's published weights, loaded by timm (its checkpoint filters) from the cached snapshot."""

    def __init__(self, model: HubModel) -> None:
        self.model = model

    def check(self, source: WeightSource) -> None:
        # Every source needs the config (the architecture); only `hub` needs the weights file too.
        self.model.check(weights=source.kind == "hub")

    def load_into(self, backbone: Backbone) -> None:
        try:
            reference = create_timm_model(self.model, pretrained=True)
        except WeightsError:
            raise
        except Exception as exc:  # noqa: BLE001 - a truncated or foreign file: any reader error gets the same advice
            folder = self.model.cached_snapshot(weights=True)
            raise WeightsError(f"Cached weights of hub model {self.model.repo_id!r} ({folder}) cannot be loaded ({exc}). "
                               f"Delete {self.model.cache_path()} and fetch it again: {self.model.fetch_command()}") from exc
        result = backbone.body.load_state_dict(reference.state_dict(), strict=False)
        _check_head_only(backbone.name, self.model.snapshot(weights=True), result.unexpected_keys, result.missing_keys, (),
                         what="Hub weights")

    def provenance(self) -> str:
        return self.model.provenance()

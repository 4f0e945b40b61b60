"""ImageNet weights through each library's own cache, with the same offline behaviour for both.

torchvision: the file torchvision itself downloads into torch hub's cache
(`$TORCH_HOME/hub/checkpoints/<file>`). timm: the Hugging Face hub cache (`$HF_HOME/hub`), where
`timm.create_model(..., pretrained=True)` keeps it. A machine that already ran either library has
the weights. Offline with no cached copy, the error names the cache location and the one command
that fills it, within `CONNECT_TIMEOUT_S` + `DOWNLOAD_TIMEOUT_S` seconds: the libraries' own
downloaders retry for far longer (timm's Hugging Face client took 47 s to give up here).
"""

from __future__ import annotations

import socket
from pathlib import Path
from urllib.error import URLError
from urllib.parse import urlparse

import torch

from backbones.backbone import Backbone
from backbones.errors import WeightsError
from backbones.registry import ImageNetWeights

CONNECT_TIMEOUT_S = 5.0  # is the host reachable at all?
DOWNLOAD_TIMEOUT_S = 20.0  # socket timeout while downloading


def _offline_error(name: str, cache: Path | str, source: str, exc: object, command: str) -> WeightsError:
    return WeightsError(
        f"ImageNet weights for {name!r} are not in the cache ({cache}) and could not be downloaded from {source} "
        f"({exc}). On a machine with internet access run:\n  {command}\nthen copy the cache to this machine "
        "(or point TORCH_HOME / HF_HOME at a cache that has them), or use weights 'scratch' or 'file:<path>'."
    )


def _reachable(url: str) -> None:
    """Raise OSError fast when the host of `url` cannot be reached (no DNS, closed port, no route)."""
    parsed = urlparse(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    with socket.create_connection((parsed.hostname, port), timeout=CONNECT_TIMEOUT_S):
        pass


def _check_head_only(name: str, path: object, unexpected: list[str], missing: list[str], head_prefixes: tuple[str, ...],
                     what: str = "ImageNet weights") -> None:
    # Our bodies replace the library's classifier by Identity, so its keys are the only ones
    # allowed to be left over; anything else means the file is for another network.
    other = sorted(k for k in unexpected if not k.startswith(head_prefixes))
    if missing or other:
        raise WeightsError(f"{what} {path} do not fit backbone {name!r}: missing {missing[:8]}, unexpected {other[:8]}.")


class TorchvisionImageNet(ImageNetWeights):
    """A torchvision `Weights` enum member, e.g. `lambda: tvm.ResNet18_Weights.IMAGENET1K_V1`."""

    HEAD_PREFIXES = ("fc.", "classifier.", "head.", "AuxLogits.")

    def __init__(self, weights_enum) -> None:
        self._enum = weights_enum  # a zero-argument callable, so torchvision's enums load lazily

    def cache_path(self) -> Path:
        filename = str(self._enum().url).rsplit("/", 1)[-1]
        return Path(torch.hub.get_dir()) / "checkpoints" / filename

    def provenance(self) -> str:
        member = self._enum()
        return f"torchvision:{type(member).__name__}.{member.name}"

    def fetch_command(self) -> str:
        member = self._enum()
        return ("python -c \"import torchvision; torchvision.models.get_weight("
                f"'{type(member).__name__}.{member.name}').get_state_dict(progress=True)\"")

    def check(self, name: str) -> None:
        path, url = self.cache_path(), str(self._enum().url)
        if path.exists():
            return
        try:
            _reachable(url)
        except OSError as exc:
            raise _offline_error(name, path, url, exc, self.fetch_command()) from exc

    def load_into(self, backbone: Backbone) -> None:
        path, url = self.cache_path(), str(self._enum().url)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            previous = socket.getdefaulttimeout()
            socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
            try:
                _reachable(url)
                torch.hub.download_url_to_file(url, str(path), progress=True)
            except (URLError, OSError, TimeoutError) as exc:
                raise _offline_error(backbone.name, path, url, exc, self.fetch_command()) from exc
            finally:
                socket.setdefaulttimeout(previous)
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any unreadable cache file gets the same advice
            raise WeightsError(f"Cached ImageNet weights {path} for {backbone.name!r} cannot be read ({exc}). "
                               f"Delete the file and fetch it again: {self.fetch_command()}") from exc
        result = backbone.body.load_state_dict(state, strict=False)
        _check_head_only(backbone.name, path, result.unexpected_keys, result.missing_keys, self.HEAD_PREFIXES)


class TimmImageNet(ImageNetWeights):
    """timm's pretrained weights for `model` (e.g. 'inception_resnet_v2.tf_in1k'), read from the HF cache."""

    FILES = ("model.safetensors", "pytorch_model.bin")  # what timm publishes on the hub, in its order

    def __init__(self, model: str) -> None:
        self.model = model

    def _cfg(self) -> dict:
        import timm

        return timm.models.get_pretrained_cfg(self.model).to_dict()

    def _repo(self) -> str:
        cfg = self._cfg()
        if not cfg.get("hf_hub_id"):
            raise WeightsError(f"timm model {self.model!r} has no pretrained weights on the hub; use weights 'scratch'.")
        return cfg["hf_hub_id"]

    def cache_path(self) -> str:
        from huggingface_hub import constants

        return str(Path(constants.HF_HUB_CACHE) / ("models--" + self._repo().replace("/", "--")))

    def fetch_command(self) -> str:
        return f"python -c \"import timm; timm.create_model('{self.model}', pretrained=True)\""

    def provenance(self) -> str:
        """`hub:<hf_hub_id>@<commit>`: what timm's tag really is (DINOv2, CLIP... are not ImageNet)."""
        found = self.cached_file()
        # huggingface_hub's layout: snapshots/<commit>/<file>; without a cached copy there is no commit yet.
        return f"hub:{self._repo()}" + (f"@{found.parent.name}" if found is not None else "")

    def cached_file(self) -> Path | None:
        from huggingface_hub import try_to_load_from_cache

        for filename in self.FILES:
            found = try_to_load_from_cache(self._repo(), filename)
            if isinstance(found, str):
                return Path(found)
        return None

    def check(self, name: str) -> None:
        from huggingface_hub import constants

        if self.cached_file() is not None:
            return
        try:
            _reachable(constants.ENDPOINT)
        except OSError as exc:
            raise _offline_error(name, self.cache_path(), constants.ENDPOINT, exc, self.fetch_command()) from exc

    def _download(self, name: str) -> Path:
        from huggingface_hub import constants, hf_hub_download
        from huggingface_hub.errors import EntryNotFoundError

        try:
            _reachable(constants.ENDPOINT)
        except OSError as exc:
            raise _offline_error(name, self.cache_path(), constants.ENDPOINT, exc, self.fetch_command()) from exc
        last: Exception | None = None
        for filename in self.FILES:
            try:
                return Path(hf_hub_download(self._repo(), filename))
            except EntryNotFoundError as exc:
                last = exc
            except Exception as exc:  # noqa: BLE001 - network, auth or disk: all end in the same advice
                raise _offline_error(name, self.cache_path(), constants.ENDPOINT, exc, self.fetch_command()) from exc
        raise _offline_error(name, self.cache_path(), constants.ENDPOINT, last, self.fetch_command())

    def load_into(self, backbone: Backbone) -> None:
        import timm

        path = self.cached_file() or self._download(backbone.name)
        # timm's own loader applies the model's checkpoint filter (key renames, head removal).
        try:
            reference = timm.create_model(self.model, pretrained=True, num_classes=0,
                                          pretrained_cfg_overlay={"file": str(path)})
        except Exception as exc:  # noqa: BLE001
            raise WeightsError(f"Cached ImageNet weights {path} for {backbone.name!r} cannot be loaded ({exc}). "
                               f"Delete {self.cache_path()} and fetch it again: {self.fetch_command()}") from exc
        result = backbone.body.load_state_dict(reference.state_dict(), strict=False)
        _check_head_only(backbone.name, path, result.unexpected_keys, result.missing_keys, ())

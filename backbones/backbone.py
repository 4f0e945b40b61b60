"""The `Backbone` wrapper: one interface over torchvision, timm and our own small CNNs."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class InputConfig:
    """What the backbone expects at its input; the transforms are derived from it (timm style)."""

    size: int  # square side in pixels the weights were trained at; suites may override per task
    mean: tuple[float, float, float] = IMAGENET_MEAN  # normalisation the pretrained weights assume
    std: tuple[float, float, float] = IMAGENET_STD  # idem
    channels: int = 3  # grayscale sources are replicated to 3 channels before they get here
    min_size: int = 32  # smallest input the downsampling stack survives (AlexNet 64, Inception 75)
    # How the weights' own evaluation resized and cropped (timm's pretrained_cfg); recorded for the
    # transforms and the report, the defaults being what our transforms do today.
    interpolation: str = "bilinear"  # resize filter the weights were trained with (timm: bicubic for ViTs)
    crop_pct: float = 1.0  # centre-crop fraction at evaluation (timm's 0.875 / 0.9 / 1.0)


class Backbone(nn.Module):
    """An image -> feature-vector network with the metadata transfer strategies need.

    `body` maps (N, C, H, W) to (N, num_features). `groups` lists the body's sub-modules from
    input to output; layer-wise unfreezing walks it backwards. `taps` names intermediate modules
    whose outputs are useful as fixed features (e.g. VGG19 `block5_pool`).
    """

    def __init__(
        self,
        name: str,
        body: nn.Module,
        num_features: int,
        input_config: InputConfig,
        groups: list[nn.Module],
        taps: dict[str, nn.Module] | None = None,
    ) -> None:
        super().__init__()
        self.name = name
        self.body = body
        self.num_features = num_features
        self.input_config = input_config
        # A plain list (not ModuleList): the groups are already registered through `body`, and
        # registering them twice would duplicate keys in the state dict.
        self._groups = list(groups)
        self._taps = dict(taps or {})
        # Where the weights came from, in words a reader can trace ("scratch",
        # "hub:timm/vit_small_patch14_dinov2.lvd142m@<commit>"); `create_backbone` sets it after loading.
        self.provenance = "scratch"

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)

    def layer_groups(self) -> list[nn.Module]:
        """Ordered from the input (index 0) to the last feature layer."""
        return list(self._groups)

    def feature_taps(self) -> dict[str, nn.Module]:
        return dict(self._taps)

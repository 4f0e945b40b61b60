"""Albumentations presets derived from the backbone's input config (timm `resolve_data_config`).

Augmentation levels (a hyperparameter, `augment`):
  none      resize + normalise only
  light     small shifts/scales and brightness/contrast; keeps orientation, for tasks where
            left-right or rotation changes the label (e.g. the generated target)
  standard  light + flips and rotations, as Hicks et al. used for endoscopy images
"""

from __future__ import annotations

import os

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # its version check would try the network

import albumentations as A  # noqa: E402
from albumentations.pytorch import ToTensorV2  # noqa: E402

AUGMENT_LEVELS = ("none", "light", "standard")


def _finish(size: int, mean, std) -> list:
    return [A.Normalize(mean=tuple(mean), std=tuple(std), max_pixel_value=255.0), ToTensorV2()]


def eval_preset(*, size: int, mean, std) -> A.Compose:
    return A.Compose([A.Resize(size, size), *_finish(size, mean, std)])


def train_preset(*, size: int, mean, std, augment: str = "light", seed: int | None = None) -> A.Compose:
    """Training transforms. `seed` fixes the augmentations: albumentations 2 keeps its own random
    state, untouched by `seed_everything`, and draws it from entropy when no seed is given."""
    if augment not in AUGMENT_LEVELS:
        raise ValueError(f"Unknown augment level {augment!r}. Valid levels: {', '.join(AUGMENT_LEVELS)}.")
    steps: list = [A.Resize(size, size)]
    if augment in ("light", "standard"):
        steps += [
            A.Affine(scale=(0.9, 1.1), translate_percent=(-0.06, 0.06), p=0.5),
            A.RandomBrightnessContrast(brightness_limit=0.1, contrast_limit=0.1, p=0.5),
        ]
    if augment == "standard":
        steps += [A.HorizontalFlip(p=0.5), A.VerticalFlip(p=0.5), A.Rotate(limit=20, p=0.5)]
    return A.Compose(steps + _finish(size, mean, std), seed=seed)

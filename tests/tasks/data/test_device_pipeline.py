"""The device pipeline (uint8 store + batch augmentation) against the per-image albumentations path."""

import numpy as np
import pytest
import torch

from backbones import create_backbone
from tasks.data import TaskDataModule, load_task
from tasks.data.device_pipeline import BatchAugment, DeviceTransform, resolve_pipeline
from tasks.data.transforms import eval_preset, train_preset
from tasks.training import Machine, TrainPlan, get_strategy, train_and_test

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _probe(size=32) -> np.ndarray:
    """Red on the left half, green on the top half, blue constant: flips and fills are visible in the statistics."""
    image = np.full((size, size, 3), 40, np.uint8)
    image[:, : size // 2, 0] = 200
    image[: size // 2, :, 1] = 200
    image[..., 2] = 120
    return image


def _statistics(batch: torch.Tensor) -> dict[str, float]:
    """Per-sample features of de-normalised outputs (N, 3, S, S), averaged over samples."""
    x = batch * torch.tensor(STD).view(1, 3, 1, 1) + torch.tensor(MEAN).view(1, 3, 1, 1)
    s = x.shape[-1]
    red, green, blue = x[:, 0], x[:, 1], x[:, 2]
    return {
        "hflip": (red[..., : s // 2].mean((1, 2)) < red[..., s // 2:].mean((1, 2))).float().mean().item(),
        "vflip": (green[:, : s // 2].mean((1, 2)) < green[:, s // 2:].mean((1, 2))).float().mean().item(),
        "blue_mean": blue.mean().item(),
        "blue_spread": blue.mean((1, 2)).std().item(),
        "dark_corner": (x[:, :, 0, 0].sum(1) < 0.02).float().mean().item(),  # zero fill reached the corner
    }


@pytest.mark.parametrize("augment", ["light", "standard"])
def test_device_augmentations_have_the_albumentations_statistics(augment):
    n, image = 800, _probe()
    cpu = train_preset(size=32, mean=MEAN, std=STD, augment=augment, seed=0)
    cpu_batch = torch.stack([cpu(image=image)["image"] for _ in range(n)])
    torch.manual_seed(0)
    stored = torch.from_numpy(image).permute(2, 0, 1).unsqueeze(0).repeat(n, 1, 1, 1)
    device_batch = DeviceTransform(augment, MEAN, STD)(stored, training=True)
    ours, theirs = _statistics(device_batch), _statistics(cpu_batch)
    # Rates of n=800 draws: binomial sd <= 0.018 each, so 0.07 is about 2.7 sd of their difference.
    for key in ("hflip", "vflip", "dark_corner"):
        assert ours[key] == pytest.approx(theirs[key], abs=0.07), (key, ours, theirs)
    assert ours["blue_mean"] == pytest.approx(theirs["blue_mean"], abs=0.02), (ours, theirs)
    assert ours["blue_spread"] == pytest.approx(theirs["blue_spread"], rel=0.35), (ours, theirs)
    expected_flip = 0.5 if augment == "standard" else 0.0
    assert ours["hflip"] == pytest.approx(expected_flip, abs=0.07)


def test_evaluation_batches_equal_the_cpu_path():
    task = load_task("gen-target", size=40)
    kw = dict(fold=0, k=3, seed=0, size=32, mean=MEAN, std=STD, batch_size=16, augment="standard")
    cpu, device = TaskDataModule(task, **kw), TaskDataModule(task, pipeline="device", **kw)
    cpu.setup(), device.setup()
    for x_cpu, y_cpu in cpu.val_dataloader():
        break
    for batch in device.val_dataloader():
        x_dev, y_dev = device.device_transform(batch, training=False)
        break
    assert batch[0].dtype == torch.uint8 and batch[0].shape == (len(x_cpu), 3, 32, 32)
    assert torch.equal(x_dev, x_cpu)  # bit-equal: normalised as albumentations normalises
    assert torch.equal(y_dev, y_cpu)
    # Training batches: the same rows per epoch as many as the CPU path serves.
    assert sum(len(b[0]) for b in device.train_dataloader()) == sum(len(b[0]) for b in cpu.train_dataloader())


def test_a_cell_trains_through_the_device_pipeline():
    task = load_task("gen-target", size=32)
    hp = get_strategy("full").resolve({"epochs": 1, "batch_size": 16, "augment": "standard"})
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        runs.append(train_and_test(task, create_backbone("smallcnn", "scratch"), TrainPlan(fold=0, k=3, seed=0, hp=hp, size=32), Machine(accelerator="cpu", pipeline="device")))
    result = runs[0]
    assert result.extra["pipeline"] == "device" and np.isfinite(result.metrics["test/mcc"])
    assert len(result.module.test_predictions()[0]) == len(result.datamodule.fold.test)
    # Reproducible: the augmentations are drawn from the seeded global generator in this process.
    assert torch.equal(runs[0].module.test_predictions()[0], runs[1].module.test_predictions()[0])


def test_auto_uses_the_store_when_it_fits_and_refuses_a_store_too_large():
    assert resolve_pipeline("auto", 1000, 224) == "device"  # 150 MB: on CPUs too (faster there as well)
    assert resolve_pipeline("auto", 10**7, 512) == "cpu"  # 7 TB: per image
    assert resolve_pipeline("cpu", 1000, 32) == "cpu"  # a suite's pin wins
    with pytest.raises(ValueError, match="pipeline: cpu"):
        resolve_pipeline("device", 10**7, 512)


def test_flips_and_identity_warps_return_exact_pixels():
    """The warps sample pixel centres: a flip is the flipped image and an unselected sample is untouched."""
    x = torch.rand(4, 3, 32, 32)
    flips = BatchAugment(standard=True, scale=0.0, shift=0.0, limit=0.0, degrees=0.0, p=1.0)
    torch.testing.assert_close(flips(x), x.flip(-1).flip(-2), atol=1e-6, rtol=0)
    untouched = BatchAugment(standard=True, p=0.0)
    torch.testing.assert_close(untouched(x), x, atol=1e-6, rtol=0)


def test_warp_matches_torch_affine_grid():
    """Our broadcast sampling grid is torch's F.affine_grid, computed without its slow K=3 bmm."""
    import torch.nn.functional as F

    from tasks.data.device_pipeline import _warp

    torch.manual_seed(0)
    x, theta = torch.rand(8, 3, 20, 20), torch.randn(8, 2, 3) * 0.5
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    torch.testing.assert_close(_warp(x, theta.view(8, 6)), F.grid_sample(x, grid, align_corners=False), atol=1e-5, rtol=0)


def test_training_batches_follow_the_cpu_paths_rows_and_order():
    """Same sampler, generator and last-batch rule: with augment none the two paths train on equal batches."""
    task = load_task("gen-target", size=40)
    kw = dict(fold=0, k=3, seed=0, size=32, mean=MEAN, std=STD, batch_size=16, augment="none")
    cpu, device = TaskDataModule(task, **kw), TaskDataModule(task, pipeline="device", **kw)
    cpu.setup(), device.setup()
    cpu_loader, device_loader = cpu.train_dataloader(), device.train_dataloader()
    firsts = []
    for _ in range(2):  # one loader iterated once per epoch, as Lightning does
        for i, ((x_cpu, y_cpu), batch) in enumerate(zip(cpu_loader, device_loader, strict=True)):
            x_dev, y_dev = device.device_transform(batch, training=True)
            assert torch.equal(x_dev, x_cpu)  # bit-equal: normalised as albumentations normalises
            assert torch.equal(y_dev, y_cpu)
            if i == 0:
                firsts.append(x_dev)
    assert not torch.equal(*firsts)  # each epoch a new order


def test_loader_workers_are_chosen_per_device():
    import os

    from tasks.data.device_pipeline import loader_workers

    assert loader_workers("auto", "cpu", "cpu") == 0  # the main process keeps up with a CPU's training
    assert loader_workers("auto", "gpu", "cpu") == max(0, min(8, os.cpu_count() - 1))
    assert loader_workers("auto", "gpu", "device") == 0  # slicing the uint8 store needs no workers
    assert loader_workers(3, "cpu", "cpu") == 3  # a suite's own number wins

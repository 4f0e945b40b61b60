"""Same spec, same numbers: augmentation and training are fixed by the seed."""

import torch

from backbones import create_backbone
from tasks.training import Machine, TrainPlan, get_strategy
from tasks.data import TaskDataModule, load_task
from tasks.training import Machine, TrainPlan, train_and_test


def _first_batch(seed: int, num_workers: int = 0):
    task = load_task("gen-target", size=16)
    dm = TaskDataModule(task, fold=0, k=3, seed=seed, size=16, mean=(0.5,) * 3, std=(0.5,) * 3, batch_size=8,
                        augment="standard", num_workers=num_workers)
    dm.setup()
    return next(iter(dm.train_dataloader()))[0]


def test_augmented_batches_are_fixed_by_the_seed():
    torch.manual_seed(123)  # global state must not matter
    a = _first_batch(0)
    torch.manual_seed(456)
    assert torch.equal(a, _first_batch(0))
    assert not torch.equal(a, _first_batch(1))


def test_workers_get_distinct_but_reproducible_augmentations():
    a, b = _first_batch(0, num_workers=2), _first_batch(0, num_workers=2)
    assert torch.equal(a, b)


def test_training_twice_gives_identical_metrics():
    task = load_task("gen-target", size=16)
    hp = get_strategy("full").resolve({"epochs": 2, "batch_size": 16, "augment": "standard"})
    runs = []
    for _ in range(2):
        torch.manual_seed(3)  # as benchmark.cell.route.run_cell does before building the backbone
        backbone = create_backbone("smallcnn")
        runs.append(train_and_test(task, backbone, TrainPlan(fold=1, k=3, seed=3, hp=hp, size=32), Machine(accelerator="cpu")).metrics)
    assert runs[0] == runs[1]

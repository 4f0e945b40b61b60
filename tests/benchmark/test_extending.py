"""A new backbone, dataset and strategy, each registered from inside this test, run in a suite.

This is README's "Extending medtl" made executable: one decorated definition each, nothing else.

    .venv/bin/python -m pytest tests/benchmark/test_extending.py -q
"""

from __future__ import annotations

import numpy as np
import pytest
from lightning.pytorch.callbacks import Callback
from mlflow.tracking import MlflowClient
from torch import nn

from backbones import BACKBONES, Backbone, InputConfig, register_backbone
from tasks.data import DATASETS, DatasetCard, Published, RemoteFile, Source, Task, TaskMeta, make_index, register_dataset
from tasks.data.images import ArrayStore
from tasks.training import STRATEGIES, HParam, register_strategy
from tests.benchmark.suites import write_suite


@pytest.fixture
def plugins():
    """Register one of each; unregister afterwards so other tests see the stock registries."""

    @register_backbone("tinynet", family="test")
    def tinynet() -> Backbone:
        body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 16, 3, stride=2),
                             nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        return Backbone("tinynet", body, 16, InputConfig(size=32, mean=(0.5,) * 3, std=(0.5,) * 3),
                        [body[:3], body[3:5]], {"conv2": body[3]})

    @register_dataset("stripes", card=DatasetCard(
        summary="horizontal vs vertical stripes", layout="generated", published=Published(40, 2, per_class=20),
        source=Source(folder="stripes", files=(RemoteFile("https://example.org/stripes.zip"),), page="https://example.org"),
    ))
    def stripes(root=None, *, n: int = 20) -> Task:
        rng = np.random.default_rng(0)
        images, labels = [], []
        for label in (0, 1):
            for _ in range(n):
                img = np.zeros((32, 32), np.uint8)
                phase = rng.integers(4)
                (img.__setitem__((slice(phase, None, 4), slice(None)), 255) if label == 0
                 else img.__setitem__((slice(None), slice(phase, None, 4)), 255))
                # Sensor noise: 4 phases per class would otherwise repeat images byte for byte, which the pre-run
                # duplicate check refuses (rightly: k-fold could put copies on both sides of train/test).
                images.append(np.clip(img.astype(np.int16) + rng.integers(-20, 21, img.shape), 0, 255).astype(np.uint8))
                labels.append(label)
        return Task(TaskMeta("stripes", ("horizontal", "vertical"), "binary"), make_index(range(2 * n), labels),
                    ArrayStore(np.stack(images), origin="generated"))

    class CountEpochs(Callback):
        def __init__(self, every: int) -> None:
            self.every, self.seen = every, 0

        def on_train_epoch_end(self, trainer, pl_module) -> None:
            self.seen += 1

    @register_strategy("counted", summary="full fine-tuning that counts its epochs",
                       params={"count_every": HParam(1, int, "epochs per count", low=1)})
    def counted(*, count_every: int) -> list[Callback]:
        return [CountEpochs(count_every)]

    yield
    BACKBONES.remove("tinynet")
    DATASETS.remove("stripes")
    STRATEGIES.remove("counted")


def test_registered_plugins_run_in_a_suite(plugins, tmp_path, mlflow_uri):
    from benchmark.run.runner import run_suite
    from tasks.data.download import download_catalogue
    from tasks.data.verify import verify

    assert download_catalogue()["stripes"].page == "https://example.org"  # the card reaches the downloader
    report = verify("stripes", None, progress=False)
    assert report.ok and "counts match the published ones: 40 images" in report.to_text()
    path = write_suite(tmp_path, name="plugins", target={"dataset": "stripes"}, backbones=["tinynet"],
                       strategies=["counted", "full"], sources={"none": {"weights": "scratch"}},
                       hparams={"epochs": 2, "batch_size": 8, "count_every": 2})
    outcome = run_suite(path, echo=lambda *_: None)
    assert outcome.exit_code == 0 and len(outcome.ran) == 4
    runs = MlflowClient(mlflow_uri).search_runs(
        [MlflowClient(mlflow_uri).get_experiment_by_name("medtl-plugins").experiment_id],
        "tags.`medtl.stage` = 'finetune'")
    counted = [r for r in runs if r.data.params["strategy"] == "counted"]
    assert len(counted) == 2 and all(r.data.params["hparams.count_every"] == "2" for r in counted)
    assert all("hparams.count_every" not in r.data.params for r in runs if r.data.params["strategy"] == "full")
    assert set(outcome.leaderboard["strategy"]) == {"counted", "full"}


def test_a_name_registered_twice_is_refused(plugins):
    with pytest.raises(ValueError, match="backbone 'tinynet' is registered twice"):
        register_backbone("tinynet")(lambda: None)
    with pytest.raises(ValueError, match="strategy 'counted' is registered twice"):
        register_strategy("counted", summary="again")(lambda: [])

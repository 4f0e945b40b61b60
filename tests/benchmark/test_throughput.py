"""Speed: the bf16-emulation warning and the precision recorded, channels_last in training,
throughput rows with their conditions, FLOPs against a hand count, fraction of peak. No timings asserted.

    .venv/bin/python -m pytest tests/benchmark/test_throughput.py -q
"""

from __future__ import annotations

import warnings

import pandas as pd
import pytest
import torch
from lightning.pytorch.callbacks import Callback
from mlflow.tracking import MlflowClient
from torch import nn

from backbones import create_backbone
from benchmark.speed import throughput as tp
from benchmark.cli import main
from benchmark.speed.cost import flops_per_image
from benchmark.run.runner import run_suite
from tasks.data import load_task
from tasks.training import Machine, TrainPlan, get_strategy, train_and_test
from tasks.training import speed
from tasks.training.module import ClassifierModule
from tests.benchmark.suites import write_suite
from tests.benchmark.test_identity import PINNED


@pytest.fixture
def emulated_bf16(monkeypatch):
    """A CPU without native bf16, whatever this machine has; the once-per-process memory cleared."""
    from benchmark.cell.quiet import quiet_libraries

    quiet_libraries()  # what a suite run installs, installed before pytest.warns starts recording
    monkeypatch.setattr(speed, "native_bf16", lambda device="cpu": False)
    monkeypatch.setattr(speed, "_warned", set())


def test_bf16_on_an_emulating_cpu_warns_once_with_the_slowdown_and_the_fix(emulated_bf16):
    with pytest.warns(RuntimeWarning) as caught:
        assert speed.warn_precision("bf16-mixed", "cpu") == "bf16-mixed"  # runs as asked: precision is identity
    text = str(caught[0].message)
    assert "25x" in text and "precision: 32-true" in text and "bf16-mixed" in text
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        speed.warn_precision("bf16-mixed", "cpu")  # once per process
        speed.warn_precision("32-true", "cpu")


def test_native_bf16_cpu_does_not_warn(monkeypatch):
    monkeypatch.setattr(speed, "_warned", set())
    monkeypatch.setattr(speed, "cpu_flags", lambda: frozenset({"avx512f", "avx512_bf16"}))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert speed.warn_precision("bf16-mixed", "cpu") == "bf16-mixed"


class LayoutProbe(Callback):
    """Records the layout of a conv weight when training starts (the batch is checked in training_step: a
    callback sees it before the module's on_after_batch_transfer)."""

    def __init__(self) -> None:
        self.seen: dict[str, bool] = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if not self.seen:
            conv = next(m for m in pl_module.modules() if isinstance(m, nn.Conv2d))
            self.seen = {"weight": conv.weight.is_contiguous(memory_format=torch.channels_last)}


def test_training_runs_channels_last_and_records_the_precision(emulated_bf16):
    task = load_task("gen-target", None, scale=0.5, size=32)
    torch.manual_seed(0)
    probe = LayoutProbe()
    seen_input = []
    original = ClassifierModule.training_step

    def spy(self, batch, batch_idx):
        seen_input.append(batch[0].is_contiguous(memory_format=torch.channels_last) and not batch[0].is_contiguous())
        return original(self, batch, batch_idx)

    hp = get_strategy("full").resolve({"epochs": 1, "batch_size": 16})
    with pytest.MonkeyPatch.context() as mp, pytest.warns(RuntimeWarning, match="25x"):
        mp.setattr(ClassifierModule, "training_step", spy)
        result = train_and_test(task, create_backbone("smallcnn", "scratch"), TrainPlan(fold=0, k=3, seed=0, hp=hp, size=32), Machine(accelerator="cpu", precision="bf16-mixed"), callbacks=[probe])
    assert result.extra["precision"] == "bf16-mixed" and result.extra["memory_format"] == "channels_last"
    assert probe.seen["weight"] and seen_input and all(seen_input)


def test_contiguous_pin_keeps_the_default_layout():
    task = load_task("gen-target", None, scale=0.5, size=32)
    hp = get_strategy("full").resolve({"epochs": 1, "batch_size": 16})
    result = train_and_test(task, create_backbone("smallcnn", "scratch"), TrainPlan(fold=0, k=3, seed=0, hp=hp, size=32), Machine(accelerator="cpu", memory_format="contiguous"))
    assert result.extra["memory_format"] == "contiguous"
    conv = next(m for m in result.module.modules() if isinstance(m, nn.Conv2d))
    assert conv.weight.is_contiguous()


def test_cell_run_records_effective_precision_and_layout(tmp_path, emulated_bf16):
    path = write_suite(tmp_path, sources={"none": {"weights": "scratch"}}, hparams={"epochs": 1, "batch_size": 32},
                       precision="bf16-mixed", throughput={"batch_size": 2, "warmup": 0, "batches": 1,
                                                           "memory_format": "channels_last"})
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    with pytest.warns(RuntimeWarning, match="25x"):
        run_suite(path, uri=uri, accelerator="cpu", echo=lambda *_: None)
    client = MlflowClient(uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()],
                              "tags.`medtl.precision_effective` = 'bf16-mixed'")
    assert runs, "no cell run carries medtl.precision_effective"
    for run in runs:
        tags = run.data.tags
        assert tags["medtl.memory_format_effective"] == "channels_last"
        assert tags["throughput.precision"] == "bf16-mixed" and tags["throughput.memory_format"] == "channels_last"


@pytest.mark.slow
def test_compile_setting_runs_the_training_steps_compiled_and_is_recorded(tmp_path):
    from torch._dynamo.utils import counters

    path = write_suite(tmp_path, sources={"none": {"weights": "scratch"}}, hparams={"epochs": 1, "batch_size": 32},
                       throughput={"batch_size": 2, "warmup": 0, "batches": 1, "compile": True})
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    counters.clear()
    run_suite(path, uri=uri, accelerator="cpu", echo=lambda *_: None)
    assert counters["stats"]["unique_graphs"] >= 1, "no graph was compiled"
    client = MlflowClient(uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()],
                              "tags.`medtl.compile_effective` = 'True'")
    assert runs and all(r.info.status == "FINISHED" and "test/mcc" in r.data.metrics for r in runs)


@pytest.mark.parametrize("name", sorted(PINNED))
def test_existing_identities_unchanged(name):
    spec, expected = PINNED[name]
    assert spec.hash == expected
    assert not {"memory_format", "compile"} & set(spec.identity())  # machine settings, not identity


def test_throughput_csv_has_conditions_and_sweep_rows(tmp_path):
    assert main(["throughput", "--backbones", "smallcnn", "--image-size", "16", "--batch-sizes", "1,2", "--warmup", "0",
                 "--batches", "1", "--out-dir", str(tmp_path), "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}"]) == 0
    files = list(tmp_path.glob("throughput_*.csv"))
    assert [f.name for f in files] == [f"throughput_cpu_16px_32-true_channels_last_t{torch.get_num_threads()}.csv"]
    table = pd.read_csv(files[0])
    assert list(zip(table["mode"], table["batch_size"])) == [("inference", 1), ("inference", 2), ("latency", 1),
                                                             ("training", 2)]
    for column in ("precision", "memory_format", "device", "threads", "image_size", "flops_per_image", "peak_source",
                   "load_avg_1m"):
        assert table[column].notna().all(), column
    assert (table["flops_per_image"] == flops_per_image(create_backbone("smallcnn", "scratch"), 16)).all()
    latency = table[table["mode"] == "latency"].iloc[0]
    assert 0 < latency["p50_ms"] <= latency["p95_ms"]
    client = MlflowClient(f"sqlite:///{tmp_path / 'm.db'}")
    runs = client.search_runs([client.get_experiment_by_name("throughput").experiment_id])
    assert len(runs) == 4 and all(r.data.tags["throughput.memory_format"] == "channels_last" for r in runs)


def test_flops_match_a_hand_count():
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.Flatten(), nn.Linear(4 * 8 * 8, 2, bias=False))
    # 2 FLOPs per multiply-add: conv 3*9 MACs per output x 4 channels x 64 positions; linear 256 x 2.
    assert flops_per_image(net, 8) == 2 * (3 * 9 * 4 * 64) + 2 * (256 * 2)


def test_fraction_of_peak_from_a_mocked_peak(monkeypatch):
    assert tp.fraction_of_peak(2e9, 10.0, tp.Peak(1e11, "mock")) == pytest.approx(0.2)
    assert tp.fraction_of_peak(2e9, 10.0, tp.Peak(float("nan"), "unknown")) != tp.fraction_of_peak(1, 1, tp.Peak(1, ""))
    h100 = tp.device_peak("cuda:NVIDIA H100 80GB HBM3", "bf16-mixed")
    assert h100.flops == 989e12 and "H100" in h100.source
    monkeypatch.setattr(tp, "cpu_flags", lambda: frozenset({"avx2", "fma"}))
    monkeypatch.setattr(tp, "_cpu_ghz", lambda: 2.0)
    cpu = tp.device_peak("cpu", "32-true", threads=2)
    assert cpu.flops == 32 * 2 * 2.0e9 and cpu.source.startswith("estimate")


def test_perf_and_pipeline_bench_produce_ratios(tmp_path):
    from benchmark.speed.perf import compare
    from benchmark.speed.pipeline_bench import bench

    table = compare(["resnet18"], image_size=32, batch_size=1, warmup=0, batches=1, rounds=1, device="cpu", with_bf16=False)
    row = table.iloc[0]
    assert row["ratio medtl/best timm"] == pytest.approx(row["medtl img/s"] / max(row["timm fp32 nchw img/s"],
                                                                                   row["timm fp32 channels_last img/s"]), rel=0.01)
    # With bf16 (forced here, whatever the CPU): each side's best configuration against the other's.
    row = compare(["resnet18"], image_size=32, batch_size=1, warmup=0, batches=1, rounds=1, device="cpu",
                  with_bf16=True).iloc[0]
    timm_best = max(row[f"{k} img/s"] for k in ("timm fp32 nchw", "timm fp32 channels_last", "timm bf16 channels_last"))
    assert row["ratio medtl/best timm"] == pytest.approx(max(row["medtl img/s"], row["medtl bf16 img/s"]) / timm_best, rel=0.01)
    assert row["best medtl"] in ("medtl", "medtl bf16")
    for pipeline in ("cpu", "device"):
        result = bench("smallcnn", 16, batch_size=4, batches=2, num_workers=0, precision="32-true", device="cpu",
                       memory_format="auto", pipeline=pipeline)
        assert result["efficiency"] == pytest.approx(result["end_to_end img/s"] / result["model_only img/s"], rel=0.01)
        assert result["memory_format"] == "channels_last" and result["pipeline"] == pipeline

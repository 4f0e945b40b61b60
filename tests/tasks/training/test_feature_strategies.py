"""Frozen-feature strategies (svm, vlad): encodings, no leakage, the feature cache, refusals, a suite.

    PYTHONPATH=. .venv/bin/python -m pytest tests/tasks/training/test_feature_strategies.py -q -n 0
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from mlflow.tracking import MlflowClient
from PIL import Image
from torch import nn

from backbones import BACKBONES, Backbone, InputConfig, create_backbone, register_backbone
from tasks.data import Task, TaskMeta, load_task, make_index
from tasks.data.images import ArrayStore, FileStore
from tasks.data.splits import make_fold
from tasks.training import Machine, TrainPlan, get_strategy, train_and_test
from tasks.training import features as features_module
from tasks.training.features import tap_features
from tasks.training.strategies import StrategyNotApplicable
from tasks.training.strategies import svm as svm_module
from tasks.training.strategies import vlad as vlad_module
from tasks.training.strategies.svm import PooledEncoder
from tasks.training.strategies.vlad import VladEncoder
from tests.benchmark.suites import write_suite
from tests.tasks.training.multilabel_tasks import bands_task


@pytest.fixture(scope="module")
def task():
    return load_task("gen-target", None, scale=0.5, size=32)


def _run(task, name, cache, *, seed=0, backbone=None, **overrides):
    torch.manual_seed(0)
    backbone = backbone if backbone is not None else create_backbone("smallcnn", "scratch")
    hp = get_strategy(name).resolve(overrides)
    return train_and_test(task, backbone, TrainPlan(fold=0, k=3, seed=seed, hp=hp, size=32, strategy=name), Machine(accelerator="cpu", feature_cache=cache))


def _rows_sorted(x: np.ndarray) -> np.ndarray:
    """Rows in lexicographic order: compare two matrices as multisets of rows."""
    return x[np.lexsort(x.T[::-1])]


# --- encodings ------------------------------------------------------------------------------------

def _reference_vlad(maps, centres, predict, power=0.5):
    """VLAD written out loop by loop (Jegou et al. 2010), to check the vectorised one against."""
    out = []
    for i in range(len(maps[0])):
        v = np.zeros_like(centres, dtype=np.float64)
        for m in maps:
            for d in m[i].reshape(m.shape[1], -1).T:  # each spatial position a C-dim descriptor
                j = int(predict(d[None].astype(np.float32))[0])
                v[j] += d - centres[j]
        v = np.sign(v) * np.abs(v) ** power
        out.append((v / np.linalg.norm(v)).ravel())
    return np.array(out)


def test_vlad_dimension_power_and_l2_normalisation():
    rng = np.random.default_rng(0)
    maps = [rng.normal(size=(12, 6, 3, 3)).astype(np.float32), rng.normal(size=(12, 6, 4, 4)).astype(np.float32)]
    encoder = VladEncoder(k=4).fit(maps, seed=0)
    vectors = encoder.transform(maps)
    assert vectors.shape == (12, 4 * 6)  # k x C, both scales into one codebook
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    reference = _reference_vlad(maps, encoder.kmeans.cluster_centers_, encoder.kmeans.predict)
    np.testing.assert_allclose(vectors, reference, rtol=1e-4, atol=1e-5)
    # Power normalisation really happened: squaring undoes it back to the L2-normalised raw residual sums.
    raw = _reference_vlad(maps, encoder.kmeans.cluster_centers_, encoder.kmeans.predict, power=1.0)
    squared = np.sign(vectors) * vectors ** 2
    np.testing.assert_allclose(squared / np.linalg.norm(squared, axis=1, keepdims=True), raw, rtol=1e-4, atol=1e-5)

    reduced = VladEncoder(k=4, pca_dim=5).fit(maps, seed=0)
    out = reduced.transform(maps)
    assert out.shape == (12, 5) and reduced.pca.n_components_ == 5
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-5)


def test_vlad_intra_normalisation_gives_unit_blocks_before_the_global_l2():
    rng = np.random.default_rng(2)
    maps = [rng.normal(size=(10, 6, 3, 3)).astype(np.float32)]
    plain = VladEncoder(k=5).fit(maps, seed=0)
    intra = VladEncoder(k=5, intra=True).fit(maps, seed=0)
    np.testing.assert_array_equal(plain.kmeans.cluster_centers_, intra.kmeans.cluster_centers_)
    vectors = intra.transform(maps)
    blocks = np.linalg.norm(vectors.reshape(10, 5, 6), axis=2)
    visited = blocks > 0
    assert (~visited).any() and visited.sum(axis=1).min() >= 1  # 9 descriptors an image over 5 centres: some empty
    # Every visited centre's block has the same norm, 1/sqrt(visited): unit blocks, then the global L2.
    np.testing.assert_allclose(blocks[visited], np.repeat(1 / np.sqrt(visited.sum(axis=1)), visited.sum(axis=1)), rtol=1e-5)
    # The same as normalising each block of the (power-normalised) reference by hand.
    raw = _reference_vlad(maps, plain.kmeans.cluster_centers_, plain.kmeans.predict).reshape(10, 5, 6)
    norms = np.linalg.norm(raw, axis=2, keepdims=True)
    by_hand = (raw / np.where(norms > 0, norms, 1)).reshape(10, 30)
    np.testing.assert_allclose(vectors, by_hand / np.linalg.norm(by_hand, axis=1, keepdims=True), rtol=1e-4, atol=1e-5)
    assert not np.allclose(vectors, plain.transform(maps))


def test_vlad_power_one_turns_power_normalisation_off():
    rng = np.random.default_rng(3)
    maps = [rng.normal(size=(8, 6, 3, 3)).astype(np.float32)]
    encoder = VladEncoder(k=4, power=1.0).fit(maps, seed=0)
    raw = _reference_vlad(maps, encoder.kmeans.cluster_centers_, encoder.kmeans.predict, power=1.0)
    np.testing.assert_allclose(encoder.transform(maps), raw, rtol=1e-4, atol=1e-5)


def test_descriptor_pca_reduces_the_local_descriptors_before_kmeans():
    rng = np.random.default_rng(4)
    maps = [rng.normal(size=(12, 10, 3, 3)).astype(np.float32)]
    encoder = VladEncoder(k=4, descriptor_pca_dim=3).fit(maps, seed=0)
    assert encoder.descriptor_pca.n_components_ == 3 and encoder.kmeans.cluster_centers_.shape == (4, 3)
    vectors = encoder.transform(maps)
    assert vectors.shape == (12, 4 * 3)
    # The reference VLAD of the projected descriptors (fed to it as 3-channel 1x1 maps, one position each).
    descriptors, images = vlad_module.local_descriptors(maps)
    projected = encoder.descriptor_pca.transform(descriptors).astype(np.float32)
    expected = np.zeros((12, 4, 3))
    nearest = encoder.kmeans.predict(projected)
    np.add.at(expected, (images, nearest), projected - encoder.kmeans.cluster_centers_[nearest])
    expected = (np.sign(expected) * np.abs(expected) ** 0.5).reshape(12, 12)
    np.testing.assert_allclose(vectors, expected / np.linalg.norm(expected, axis=1, keepdims=True), rtol=1e-4, atol=1e-5)
    with pytest.warns(UserWarning, match="descriptor_pca_dim=50 exceeds the local descriptors' dimension 10"):
        assert VladEncoder(k=4, descriptor_pca_dim=50).fit(maps, seed=0).descriptor_pca.n_components_ == 10


def test_vlad_options_resolve_neutral_and_k_takes_the_papers_values():
    from tasks.training.hparams import identity

    strategy = get_strategy("vlad")
    hp = strategy.resolve({})
    assert (hp["vlad_power"], hp["vlad_intra"], hp["descriptor_pca_dim"]) == (0.5, False, 0)
    assert identity(strategy.table, hp).keys() == hp.keys() - {"vlad_power", "vlad_intra", "descriptor_pca_dim"}
    for k in (64, 256):
        assert strategy.resolve({"vlad_k": k})["vlad_k"] == k
    encoder = vlad_module._encoder(strategy.resolve({"vlad_k": 256, "vlad_intra": True, "descriptor_pca_dim": 64,
                                                     "vlad_power": 1.0}))
    assert (encoder.k, encoder.intra, encoder.descriptor_pca_dim, encoder.power) == (256, True, 64, 1.0)


def test_pooled_encoder_l2_per_scale_then_mean_or_concat():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(5, 7)).astype(np.float32), 10 * rng.normal(size=(5, 7)).astype(np.float32)
    unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731
    np.testing.assert_allclose(PooledEncoder("mean").transform([a, b]), unit(unit(a) + unit(b)), rtol=1e-5)
    concat = PooledEncoder("concat").transform([a, b])
    assert concat.shape == (5, 14)
    np.testing.assert_allclose(concat, unit(np.concatenate([unit(a), unit(b)], axis=1)), rtol=1e-5)


# --- no leakage -------------------------------------------------------------------------------------

def _recording(cls, calls: list):
    class Recording(cls):
        def fit(self, X, y=None, **kwargs):
            calls.append((np.array(X, copy=True), None if y is None else np.array(y, copy=True)))
            return super().fit(X, y, **kwargs)

    Recording.__name__ = cls.__name__
    return Recording


def test_kmeans_pca_and_c_search_see_training_rows_only(task, tmp_path, monkeypatch):
    kmeans, pca, search = [], [], []
    monkeypatch.setattr(vlad_module, "MiniBatchKMeans", _recording(vlad_module.MiniBatchKMeans, kmeans))
    monkeypatch.setattr(vlad_module, "PCA", _recording(vlad_module.PCA, pca))
    monkeypatch.setattr(svm_module, "GridSearchCV", _recording(svm_module.GridSearchCV, search))
    result = _run(task, "vlad", tmp_path, vlad_k=8, pca_dim=6)
    fold = result.datamodule.fold
    assert len(fold.val) and len(fold.test)
    assert not set(fold.train) & (set(fold.val) | set(fold.test))
    maps = tap_features(task, result.module.backbone, tap="block4", scale=32, pool="map", cache_dir=tmp_path).array
    train_maps = maps[fold.train]
    encoder = result.module.encoder

    (x_kmeans, _), = kmeans
    descriptors, _ = vlad_module.local_descriptors([train_maps])
    np.testing.assert_array_equal(_rows_sorted(x_kmeans), _rows_sorted(descriptors))  # exactly the training rows' descriptors

    (x_pca, _), = pca
    assert len(x_pca) == len(fold.train)
    np.testing.assert_allclose(_rows_sorted(x_pca), _rows_sorted(encoder.vlad([train_maps])), atol=1e-6)

    (x_search, y_search), = search
    np.testing.assert_allclose(x_search, encoder.transform([train_maps]), atol=1e-6)
    np.testing.assert_array_equal(y_search, task.labels[fold.train])

    # And the plain SVM: its C search sees exactly the training rows' pooled features.
    search.clear()
    result = _run(task, "svm", tmp_path)
    pooled = tap_features(task, result.module.backbone, tap="final", scale=32, pool="gap", cache_dir=tmp_path).array
    (x_search, y_search), = search
    np.testing.assert_allclose(x_search, PooledEncoder().transform([pooled[fold.train]]), atol=1e-6)
    np.testing.assert_array_equal(y_search, task.labels[fold.train])


# --- cache --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, overrides", [("svm", {}), ("vlad", {"vlad_k": 8})])
def test_cached_and_recomputed_features_give_the_same_test_metrics(task, tmp_path, name, overrides):
    first = _run(task, name, tmp_path / "a", **overrides)
    cached = _run(task, name, tmp_path / "a", **overrides)
    fresh = _run(task, name, tmp_path / "b", **overrides)
    assert first.extra["features/cache_hits"] == 0 and cached.extra["features/cache_hits"] == 1
    assert fresh.extra["features/cache_hits"] == 0
    tests = {k: v for k, v in first.metrics.items() if k.startswith("test/")}
    assert tests and tests == {k: cached.metrics[k] for k in tests} == {k: fresh.metrics[k] for k in tests}
    for other in (cached, fresh):
        assert torch.equal(first.module.test_predictions()[0], other.module.test_predictions()[0])
    # Another fold and seed reuse the same entry: one extraction serves the whole suite.
    torch.manual_seed(0)
    backbone = create_backbone("smallcnn", "scratch")
    other = train_and_test(task, backbone, TrainPlan(fold=1, k=3, seed=5, hp=get_strategy(name).resolve(overrides), size=32, strategy=name), Machine(accelerator="cpu", feature_cache=tmp_path / "a"))
    assert other.extra["features/cache_hits"] == 1
    assert len(list((tmp_path / "a").glob("*.npy"))) == 1


def _array_task(images: np.ndarray) -> Task:
    labels = np.arange(len(images)) % 2
    return Task(TaskMeta("arrays", ("a", "b"), "binary"), make_index(range(len(images)), labels), ArrayStore(images))


def _entry(task, backbone, cache):
    return tap_features(task, backbone, tap="block2", scale=32, pool="gap", cache_dir=cache)


def test_one_changed_image_or_weight_invalidates_the_cache(tmp_path):
    images = np.random.default_rng(0).integers(0, 255, (6, 32, 32, 3), dtype=np.uint8)
    torch.manual_seed(0)
    backbone = create_backbone("smallcnn", "scratch")
    base = _entry(_array_task(images), backbone, tmp_path)
    assert not base.cached and _entry(_array_task(images.copy()), backbone, tmp_path).cached  # same content, same entry

    changed = images.copy()
    changed[3, 0, 0, 0] ^= 1  # one pixel of one image
    other = _entry(_array_task(changed), backbone, tmp_path)
    assert not other.cached and other.key != base.key

    with torch.no_grad():
        backbone.body[0][0].weight[0, 0, 0, 0] += 1e-3  # one weight
    moved = _entry(_array_task(images), backbone, tmp_path)
    assert not moved.cached and moved.key != base.key
    with torch.no_grad():
        backbone.body[0][0].weight[0, 0, 0, 0] -= 1e-3
        backbone.body[0][1].running_mean[0] += 1.0  # one BatchNorm statistic is part of the weights too
    assert not _entry(_array_task(images), backbone, tmp_path).cached


def test_a_rewritten_image_file_invalidates_the_cache(tmp_path):
    root = tmp_path / "images"
    root.mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(root / f"{i}.png")
    task = Task(TaskMeta("files", ("a", "b"), "binary"), make_index([f"{i}.png" for i in range(6)], np.arange(6) % 2),
                FileStore(root))
    torch.manual_seed(0)
    backbone = create_backbone("smallcnn", "scratch")
    cache = tmp_path / "cache"
    base = _entry(task, backbone, cache)
    assert _entry(task, backbone, cache).cached
    Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(root / "2.png")
    changed = _entry(task, backbone, cache)
    assert not changed.cached and changed.key != base.key
    assert not np.array_equal(changed.array[2], base.array[2]) and np.array_equal(changed.array[0], base.array[0])


# --- refusals -------------------------------------------------------------------------------------------

@pytest.fixture
def flatnet():
    """A backbone whose only output is a pooled vector: no spatial tap."""

    @register_backbone("flatnet", family="test")
    def build() -> Backbone:
        body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        return Backbone("flatnet", body, 8, InputConfig(size=32, mean=(0.5,) * 3, std=(0.5,) * 3), [body], {})

    yield "flatnet"
    BACKBONES.remove("flatnet")


def test_vlad_without_a_spatial_tap_fails_before_training_naming_alternatives(flatnet, task, tmp_path, mlflow_uri):
    from benchmark.plan.suite import SuiteError, load_suite

    hp = get_strategy("vlad").resolve({})
    with pytest.raises(StrategyNotApplicable, match="needs a spatial feature map") as error:
        get_strategy("vlad").check(flatnet, hp, image_size=32)
    for alternative in ("svm", "full", "linear", "vgg19 block5_pool", "resnet18 layer4"):
        assert alternative in str(error.value)
    get_strategy("svm").check(flatnet, get_strategy("svm").resolve({}), image_size=32)  # its pooled output is enough

    path = write_suite(tmp_path, backbones=[flatnet], strategies=["svm", "vlad"], sources={"none": {"weights": "scratch"}})
    with pytest.raises(SuiteError, match="'vlad' needs a spatial feature map.*Valid alternatives"):
        load_suite(path)

    cache = tmp_path / "cache"
    with pytest.raises(StrategyNotApplicable):
        _run(task, "vlad", cache, backbone=create_backbone(flatnet))
    assert not cache.exists()  # nothing was extracted


def test_an_unknown_tap_names_the_valid_ones(task, tmp_path):
    with pytest.raises(StrategyNotApplicable, match=r"no tap 'block5_pool'.*Valid taps: auto, block1, block2, block3, block4"):
        _run(task, "svm", tmp_path, tap="block5_pool")
    with pytest.raises(StrategyNotApplicable, match="Valid taps: auto, block1"):
        _run(task, "vlad", tmp_path, tap="final")


def test_vgg19_defaults_to_block5_pool():
    from tasks.training.features import meta_backbone, tap_shapes
    from tasks.training.strategies.svm import resolve_tap

    shapes = tap_shapes(meta_backbone("vgg19"), 224)
    assert resolve_tap("svm", "vgg19", "auto", shapes, spatial=False) == "block5_pool" == \
        resolve_tap("vlad", "vgg19", "auto", shapes, spatial=True)
    assert shapes["block5_pool"] == (512, 7, 7)
    assert resolve_tap("vlad", "resnet18", "auto", tap_shapes(meta_backbone("resnet18"), 224), spatial=True) == "layer4"


# --- frozen backbone, multi-label ------------------------------------------------------------------

@pytest.mark.parametrize("name", ["svm", "vlad"])
def test_a_frozen_feature_cell_leaves_every_backbone_tensor_identical(task, tmp_path, name):
    torch.manual_seed(0)
    backbone = create_backbone("smallcnn", "scratch").train()
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    result = _run(task, name, tmp_path, backbone=backbone, **({"vlad_k": 8} if name == "vlad" else {}))
    after = result.module.backbone.state_dict()
    for key, value in before.items():  # weights and BatchNorm running statistics alike
        assert torch.equal(after[key], value), key
    assert backbone.training  # its mode is restored after extraction


def test_multilabel_svm_is_one_vs_rest_and_its_scores_threshold_at_the_svm_decision(tmp_path):
    task = bands_task(60)
    result = _run(task, "svm", tmp_path)
    probs, targets = (t.numpy() for t in result.module.test_predictions())
    fold = make_fold(task, fold=0, k=3, seed=0, val_fraction=0.15)
    assert probs.shape == (len(fold.test), 3) and targets.shape == probs.shape
    pooled = tap_features(task, result.module.backbone, tap="final", scale=32, pool="gap", cache_dir=tmp_path).array
    decided = result.module.svm.predict(PooledEncoder().transform([pooled[fold.test]]))
    np.testing.assert_array_equal(probs >= 0.5, decided.astype(bool))
    assert all(np.isfinite(v) for v in result.metrics.values())


# --- a suite ----------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_a_suite_of_svm_and_vlad_logs_test_metrics_to_mlflow(tmp_path, mlflow_uri):
    from benchmark.run.runner import run_suite

    path = write_suite(tmp_path, name="frozen", strategies=["svm", "vlad"], sources={"none": {"weights": "scratch"}},
                       hparams={"vlad_k": 8, "pca_dim": 8})
    outcome = run_suite(path, echo=lambda *_: None)
    assert outcome.exit_code == 0 and len(outcome.ran) == 4, outcome.failed
    client = MlflowClient(mlflow_uri)
    runs = client.search_runs([client.get_experiment_by_name("medtl-frozen").experiment_id], "tags.`medtl.stage` = 'finetune'")
    assert len(runs) == 4 and {r.data.params["strategy"] for r in runs} == {"svm", "vlad"}
    for run in runs:
        assert run.info.status == "FINISHED"
        metrics = run.data.metrics
        for name in ("test/mcc", "test/f1", "test/rec", "test/prec", "test/spec", "test/acc", "test/acc_micro", "test/auc",
                     "test/fps", "test/fps_pipeline", "val/mcc", "svm/C", "features/dim"):
            assert name in metrics, (run.data.params["strategy"], name)
        assert -1 <= metrics["test/mcc"] <= 1 and metrics["test/fps"] > 0
        assert "hparams.epochs" not in run.data.params and "hparams.lr" not in run.data.params
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "test")}
        assert {"test/confusion_matrix.csv", "test/predictions.csv", "test/per_class_report.csv"} <= artifacts
    vlad = [r for r in runs if r.data.params["strategy"] == "vlad"]
    assert all(r.data.params["hparams.vlad_k"] == "8" and r.data.metrics["features/dim"] == 8 for r in vlad)
    # Both folds of one strategy read one cache entry (svm: pooled; vlad: maps), under the working directory.
    assert len(list((tmp_path / ".medtl_cache" / "features").glob("*.npy"))) == 2
    assert set(outcome.leaderboard["strategy"]) == {"svm", "vlad"}
    assert features_module.default_cache_dir().resolve() == (tmp_path / ".medtl_cache" / "features").resolve()


def test_a_backbone_whose_last_map_is_1x1_passes_the_feature_check():
    # ResNet-18 at 32 px ends in a 1x1 map: a one-image shape probe in training mode made BatchNorm refuse it.
    for name in ("svm", "knn", "fewshot"):
        strategy = get_strategy(name)
        strategy.check("resnet18", strategy.resolve({}), image_size=32)

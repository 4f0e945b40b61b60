"""VLAD + linear SVM (Farhat & Sicre, after Jegou et al. 2010, "Aggregating local descriptors into a compact image representation").

  vlad  the backbone stays frozen; a spatial tap's map (VGG `block5_pool` by default, else the
        deepest spatial tap) gives one C-dim local descriptor per position, at every scale of
        `scales`; a k-means codebook of `vlad_k` centres (scikit-learn MiniBatchKMeans) is fit on
        descriptors of the training rows only; an image's VLAD vector is, per centre, the sum of
        the residuals (descriptor - centre) of the descriptors assigned to it (k x C values, all
        scales' descriptors into one codebook, as Jegou et al. pool dense multi-scale descriptors),
        then signed power normalisation (sign(v) |v|^`vlad_power`, 0.5 by default; 1 turns it
        off) and L2 normalisation; optionally PCA to `pca_dim` dimensions (fit on training rows
        only) and L2 again; then the linear SVM of `svm.py` (C by cross-validation on the training
        rows only).

Options beside Jegou et al.'s (all off by default, so existing cells keep their vectors):
  descriptor_pca_dim  PCA of the local descriptors before k-means (fit on the training rows'
                      sampled descriptors), so codebook and residuals live in d' < C dimensions
                      (k x d' values; Jegou et al. 2012 reduce SIFT this way)
  vlad_intra          intra-normalisation (Arandjelovic & Zisserman 2013, "All about VLAD"): each
                      centre's residual sum L2-normalised on its own, after the power normalisation
                      and before the global L2, so every visited centre weighs the same however
                      bursty its descriptors (an empty centre stays zero)

Local descriptors are the tap's raw activations (no per-descriptor normalisation), as Jegou et al.
aggregate SIFT as computed. The codebook is fit on at most `MAX_DESCRIPTORS` descriptors drawn
(seeded) from the training rows: k-means needs a sample of the descriptor distribution, not all of
it, and a 544 px VGG map has 289 positions per image.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
from scipy import sparse
from sklearn.cluster import MiniBatchKMeans
from sklearn.decomposition import PCA

from tasks.training.hparams import HParam
from tasks.training.strategies import FeatureStrategy, add_strategy
from tasks.training.strategies.svm import SCALES, SHARED_READ, SVM_CS, SVM_CV, TAP, applicability, frozen_fit, l2_normalise

POWER = 0.5  # Jegou et al.'s signed power normalisation exponent
MAX_DESCRIPTORS = 100_000  # k-means sample size (see the module docstring)
CHUNK = 256  # images aggregated at a time (bounds memory: chunk x positions x C residuals)


def local_descriptors(maps: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(descriptors (M, C), image of each (M,)) from per-scale maps (N, C, H, W): one descriptor per position."""
    descriptors, images = [], []
    for m in maps:
        n, c, h, w = m.shape
        descriptors.append(np.ascontiguousarray(m.transpose(0, 2, 3, 1)).reshape(n * h * w, c))
        images.append(np.repeat(np.arange(n), h * w))
    return np.concatenate(descriptors).astype(np.float32, copy=False), np.concatenate(images)


def vlad_vectors(maps: list[np.ndarray], centres: np.ndarray, assign, power: float = POWER, *, intra: bool = False,
                 project=None) -> np.ndarray:
    """(N, k x d) VLAD vectors: residuals summed per centre, signed power normalised, intra-normalised
    (per centre, if `intra`), then L2 normalised; `project` maps (M, C) descriptors to the centres' d dims."""
    k, c = centres.shape
    n = len(maps[0])
    out = np.empty((n, k * c), dtype=np.float32)
    for lo in range(0, n, CHUNK):
        chunk = [m[lo:lo + CHUNK] for m in maps]
        descriptors, images = local_descriptors(chunk)
        if project is not None:
            descriptors = np.asarray(project(descriptors), dtype=np.float32)
        nearest = assign(descriptors)
        residuals = descriptors - centres[nearest]
        # One sparse (image x centre) <- descriptor incidence matrix: a scatter-add of residuals per (image, centre).
        incidence = sparse.csr_matrix((np.ones(len(nearest), np.float32), (images * k + nearest, np.arange(len(nearest)))),
                                      shape=(len(chunk[0]) * k, len(nearest)))
        summed = np.asarray(incidence @ residuals).reshape(len(chunk[0]), k * c)
        if power != 1.0:
            summed = np.sign(summed) * np.abs(summed) ** power
        if intra:
            blocks = summed.reshape(len(chunk[0]), k, c)
            norms = np.linalg.norm(blocks, axis=2, keepdims=True)
            summed = (blocks / np.where(norms > 0, norms, 1.0)).reshape(len(chunk[0]), k * c)
        out[lo:lo + CHUNK] = summed
    return l2_normalise(out)


class VladEncoder:
    """Codebook (and optional PCA) learnt from the training rows' maps; VLAD vectors for any rows."""

    pool = "map"  # what the cache holds for this encoder

    def __init__(self, k: int, pca_dim: int = 0, *, power: float = POWER, intra: bool = False,
                 descriptor_pca_dim: int = 0) -> None:
        self.k, self.pca_dim = int(k), int(pca_dim)
        self.power, self.intra, self.descriptor_pca_dim = float(power), bool(intra), int(descriptor_pca_dim)
        self.kmeans: MiniBatchKMeans | None = None
        self.pca: PCA | None = None
        self.descriptor_pca: PCA | None = None  # local descriptors -> descriptor_pca_dim, before k-means

    def fit(self, per_scale: list[np.ndarray], seed: int) -> "VladEncoder":
        descriptors, _ = local_descriptors(per_scale)
        if len(descriptors) < self.k:
            raise ValueError(f"vlad_k={self.k} exceeds the {len(descriptors)} local descriptors of the training rows; "
                             f"set hyperparameter vlad_k <= {len(descriptors)} (or use larger scales).")
        if len(descriptors) > MAX_DESCRIPTORS:
            descriptors = descriptors[np.random.default_rng(seed).choice(len(descriptors), MAX_DESCRIPTORS, replace=False)]
        if self.descriptor_pca_dim:
            dim = min(self.descriptor_pca_dim, *descriptors.shape)
            if dim < self.descriptor_pca_dim:
                warnings.warn(f"descriptor_pca_dim={self.descriptor_pca_dim} exceeds the local descriptors' dimension "
                              f"{descriptors.shape[1]}; PCA keeps {dim} components.", stacklevel=2)
            self.descriptor_pca = PCA(n_components=dim, random_state=seed).fit(descriptors)
            descriptors = self.descriptor_pca.transform(descriptors).astype(np.float32)
        self.kmeans = MiniBatchKMeans(n_clusters=self.k, random_state=seed, n_init=3).fit(descriptors)
        if self.pca_dim:
            vectors = self.vlad(per_scale)
            dim = min(self.pca_dim, *vectors.shape)
            if dim < self.pca_dim:
                warnings.warn(f"pca_dim={self.pca_dim} exceeds what {vectors.shape[0]} training rows of dimension "
                              f"{vectors.shape[1]} allow; PCA keeps {dim} components.", stacklevel=2)
            self.pca = PCA(n_components=dim, random_state=seed).fit(vectors)
        return self

    def vlad(self, per_scale: list[np.ndarray]) -> np.ndarray:
        """VLAD vectors before PCA (N, k x C)."""
        assert self.kmeans is not None, "fit the encoder on training rows first"
        project = None if self.descriptor_pca is None else self.descriptor_pca.transform
        return vlad_vectors(per_scale, self.kmeans.cluster_centers_.astype(np.float32), self.kmeans.predict, self.power,
                            intra=self.intra, project=project)

    def transform(self, per_scale: list[np.ndarray]) -> np.ndarray:
        vectors = self.vlad(per_scale)
        return vectors if self.pca is None else l2_normalise(self.pca.transform(vectors))


def _encoder(hp: Mapping[str, Any]) -> VladEncoder:
    return VladEncoder(int(hp["vlad_k"]), int(hp["pca_dim"]), power=float(hp["vlad_power"]), intra=bool(hp["vlad_intra"]),
                       descriptor_pca_dim=int(hp["descriptor_pca_dim"]))


VLAD_PARAMS = {
    "tap": TAP,
    "scales": SCALES,
    "vlad_k": HParam(64, int, "k-means codebook size (Jegou et al.: 64 or 256)", low=2,
                     space=lambda trial, name: trial.suggest_categorical(name, [64, 256])),
    "pca_dim": HParam(0, int, "PCA dimension of the VLAD vector, fit on training rows only (0: no PCA)", low=0,
                      space=lambda trial, name: trial.suggest_categorical(name, [0, 128, 256])),
    # Added for Farhat & Sicre's options (issue 20); neutral = the encoding from before they existed.
    "vlad_power": HParam(POWER, float, "signed power normalisation exponent of the VLAD vector (1: none)", low=0.1,
                         high=1.0, neutral=POWER, space=lambda trial, name: trial.suggest_categorical(name, [0.5, 1.0])),
    "vlad_intra": HParam(False, bool, "intra-normalisation: each centre's residual sum L2-normalised before the global L2",
                         neutral=False, space=lambda trial, name: trial.suggest_categorical(name, [False, True])),
    "descriptor_pca_dim": HParam(0, int, "PCA dimension of the local descriptors before k-means (0: no PCA)", low=0,
                                 neutral=0, space=lambda trial, name: trial.suggest_categorical(name, [0, 64, 128])),
    "svm_cs": SVM_CS,
    "svm_cv": SVM_CV,
}


add_strategy(FeatureStrategy(
    name="vlad",
    summary="VLAD + linear SVM (Farhat & Sicre; Jegou et al. 2010): tap map descriptors, k-means codebook, residual sums",
    params=VLAD_PARAMS,
    shared=SHARED_READ,
    fit=frozen_fit("vlad", spatial=True, make_encoder=_encoder),
    applies=applicability("vlad", spatial=True),
))

"""Local descriptors for bag of visual words, and a disk cache so each is computed once per key.

Descriptors are computed once per (data, descriptor setting) and codebooks once per (descriptors,
k, seed); trials that differ only in the SVM reuse both. A file lock makes concurrent trials on a
node wait for the one computing a key instead of computing it again.
"""

from __future__ import annotations

import fcntl
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from sklearn.cluster import MiniBatchKMeans
from sklearn.feature_extraction.text import TfidfTransformer
from sklearn.metrics import pairwise_distances_argmin
from sklearn.preprocessing import normalize

from scenetune.atomic import replaced_when_written
from trainables.checkpoints import load_model
from trainables.models import layer_output

MAX_KMEANS_SAMPLES = 100_000


@dataclass
class Descriptors:
    """All descriptors of a split: values (M, D) and the image each belongs to (M,)."""

    values: np.ndarray
    image_index: np.ndarray
    n_images: int


def cached_arrays(
    directory: Path, key: str, compute: Callable[[], dict[str, np.ndarray]]
) -> tuple[dict[str, np.ndarray], bool]:
    """Arrays stored under `key`, computed by `compute` only if no trial has stored them yet.

    Returns the arrays and whether they came from the cache.
    """
    directory.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:24]
    path = directory / f"{digest}.npz"
    with open(directory / f"{digest}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if path.is_file():
            with np.load(path) as saved:
                return {name: saved[name] for name in saved.files}, True
        arrays = compute()
        with replaced_when_written(path, suffix=".npz") as partial:
            np.savez(partial, **arrays)
        return arrays, False


def dense_sift(images: np.ndarray, step: int, size: int) -> Descriptors:
    """SIFT descriptors on a regular grid (every `step` pixels, keypoints of diameter `size`)."""
    side = images.shape[1]
    if step > side or size > side:
        raise ValueError(
            f"SIFT grid step {step} and keypoint size {size} must not exceed the image size {side}"
        )
    positions = np.arange(size / 2, side - size / 2 + 1e-9, step) if size < side else np.array([side / 2])
    keypoints = [cv2.KeyPoint(float(x), float(y), float(size)) for y in positions for x in positions]
    sift = cv2.SIFT_create()
    values, owners = [], []
    for index, image in enumerate(images):
        gray = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
        _, described = sift.compute(gray, keypoints)
        if described is None:
            continue
        values.append(described.astype(np.float32))
        owners.append(np.full(len(described), index, dtype=np.int64))
    return Descriptors(np.concatenate(values), np.concatenate(owners), len(images))


def learnt_descriptors(checkpoint: Path, images: np.ndarray, layer: str) -> Descriptors:
    """A patch MLP's activations of one layer, one descriptor per patch."""
    model, _ = load_model(checkpoint)
    per_patch = layer_output(model, images, layer).float().cpu().numpy()  # (N, P, F)
    n, patches, features = per_patch.shape
    return Descriptors(per_patch.reshape(n * patches, features), np.repeat(np.arange(n), patches), n)


def fit_codebook(train: Descriptors, k: int, seed: int) -> np.ndarray:
    """k-means centres of (a seeded sample of at most MAX_KMEANS_SAMPLES) training descriptors."""
    values = train.values
    if len(values) > MAX_KMEANS_SAMPLES:
        values = values[np.random.default_rng(seed).choice(len(values), MAX_KMEANS_SAMPLES, replace=False)]
    kmeans = MiniBatchKMeans(n_clusters=k, random_state=seed, n_init=3, batch_size=max(1024, 4 * k))
    return kmeans.fit(values).cluster_centers_.astype(np.float32)


def word_histograms(descriptors: Descriptors, codebook: np.ndarray) -> np.ndarray:
    """Counts of each visual word per image (n_images, k)."""
    words = pairwise_distances_argmin(descriptors.values, codebook)  # nearest centre, in bounded chunks
    k = len(codebook)
    flat = descriptors.image_index * k + words
    return (
        np.bincount(flat, minlength=descriptors.n_images * k)
        .reshape(descriptors.n_images, k)
        .astype(np.float64)
    )


def normalize_histograms(
    histograms: np.ndarray, normalization: str, idf: np.ndarray | None = None
) -> np.ndarray:
    weighted = histograms * idf if idf is not None else histograms
    if normalization == "power":  # square root, then l2: the Hellinger mapping of the histograms
        return normalize(np.sqrt(weighted), norm="l2")
    if normalization not in ("l1", "l2"):
        raise ValueError(f"normalization must be one of l1, l2, power, got {normalization!r}")
    return normalize(weighted, norm=normalization)


def inverse_document_frequency(train_histograms: np.ndarray) -> np.ndarray:
    """Smoothed idf of each visual word over the training images, as scikit-learn's tf-idf defines it."""
    return TfidfTransformer(norm=None, smooth_idf=True).fit(train_histograms).idf_

"""Local descriptors for bag of visual words, k-means codebooks, and visual-word histograms.

Descriptors are computed once per (data, descriptor setting) and codebooks once per (descriptors,
k, seed), through the disk cache of `trainables.array_cache`; trials that differ only in the SVM
reuse both.
"""

from __future__ import annotations

import functools
import os
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from sklearn.cluster import MiniBatchKMeans
from sklearn.feature_extraction.text import TfidfTransformer
from sklearn.metrics import pairwise_distances_argmin
from sklearn.preprocessing import normalize
from threadpoolctl import threadpool_limits

from trainables.array_cache import PastDeadline
from trainables.bovw import KMEANS_N_INIT, MAX_KMEANS_SAMPLES, kmeans_batch_size, sift_grid
from trainables.checkpoints import load_model
from trainables.models import layer_output


class FitPastDeadline(PastDeadline):
    """A codebook fit that could not end before its trial's deadline."""

    what = "the fit of its codebook"


@dataclass
class Descriptors:
    """All descriptors of a split: values (M, D) and the image each belongs to (M,)."""

    values: np.ndarray
    image_index: np.ndarray
    n_images: int


def dense_sift(images: np.ndarray, step: int, size: int) -> Descriptors:
    """SIFT descriptors on a regular grid (every `step` pixels, keypoints of diameter `size`)."""
    side = images.shape[1]
    if step > side or size > side:
        raise ValueError(
            f"SIFT grid step {step} and keypoint size {size} must not exceed the image size {side}"
        )
    positions = sift_grid(side, step, size)
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


def codebook_sample(train: Descriptors, seed: int) -> np.ndarray:
    """The training descriptors a codebook is fitted on: a seeded sample of at most MAX_KMEANS_SAMPLES."""
    values = train.values
    if len(values) > MAX_KMEANS_SAMPLES:
        values = values[np.random.default_rng(seed).choice(len(values), MAX_KMEANS_SAMPLES, replace=False)]
    return values


def codebook_kmeans(k: int, seed: int) -> MiniBatchKMeans:
    """The k-means a k-word codebook is fitted with (no labels: a codebook needs only its centres)."""
    return MiniBatchKMeans(
        n_clusters=k,
        random_state=seed,
        n_init=KMEANS_N_INIT,
        batch_size=kmeans_batch_size(k),
        compute_labels=False,
    )


def kmeans_centres(values: np.ndarray, k: int, seed: int) -> np.ndarray:
    return codebook_kmeans(k, seed).fit(values).cluster_centers_.astype(np.float32)


def fit_codebook(train: Descriptors, k: int, seed: int) -> np.ndarray:
    """k-means centres of (a seeded sample of at most MAX_KMEANS_SAMPLES) training descriptors."""
    return kmeans_centres(codebook_sample(train, seed), k, seed)


def _centres_in_threads(values: np.ndarray, k: int, seed: int, threads: int) -> np.ndarray:
    with threadpool_limits(limits=threads):
        return kmeans_centres(values, k, seed)


def _cpus_of_this_trial() -> int:
    import ray

    try:
        return max(1, int(ray.get_runtime_context().get_assigned_resources().get("CPU", 1)))
    except AssertionError:  # not in a Ray worker (a test calling the fit directly): all CPUs
        return os.cpu_count() or 1


@functools.cache
def _remote_fit():  # defined once per process: Ray ships a remote function's code when it is defined
    import ray

    return ray.remote(_centres_in_threads)


def fit_codebook_by(train: Descriptors, k: int, seed: int, deadline: float | None) -> np.ndarray:
    """fit_codebook, given up when `deadline` (a time.perf_counter() value; None: no limit) passes.

    scikit-learn's k-means cannot be interrupted from Python, and a large codebook's fit takes minutes
    (k-means++ placing k centres among 12 k samples: its time grows as k squared). Under a deadline the
    fit therefore runs as a Ray task on this node, with as many threads as this trial has CPUs and no
    reservation of its own (the trial holds its CPUs while it waits), and is cancelled, its worker
    process killed, when the deadline passes. Raises FitPastDeadline then, or at once if it has passed.
    """
    if deadline is None:
        return fit_codebook(train, k, seed)
    if time.perf_counter() >= deadline:
        raise FitPastDeadline
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = ray.get_runtime_context()
    on_this_node = NodeAffinitySchedulingStrategy(here.get_node_id(), soft=False)
    fit = _remote_fit().options(num_cpus=0, max_retries=0, scheduling_strategy=on_this_node)
    centres = fit.remote(codebook_sample(train, seed), k, seed, _cpus_of_this_trial())
    ready, _ = ray.wait([centres], timeout=max(0.0, deadline - time.perf_counter()))
    if not ready:
        ray.cancel(centres, force=True)
        raise FitPastDeadline
    return ray.get(centres)


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

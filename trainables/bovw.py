"""Task 4 as a Ray Tune trainable: descriptors -> k-means codebook -> visual-word histograms -> SVM."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from scenetune.data import TrialData, default_cache_dir
from scenetune.experiment import TRAIN_AND_VAL, trains_on_validation
from search_spaces import bovw as bovw_space
from trainables.specs import check_svm_config
from trainables.task import Task

if TYPE_CHECKING:
    from trainables.descriptors import Descriptors

SPLITS = ("train", "val", "test")

DESCRIPTORS = ("sift", "learnt")
NORMALIZATIONS = ("l1", "l2", "power")
BOVW_KERNELS = ("rbf", "linear", "intersection")


# A key naming the descriptors, the function computing them, and the image size they need.
DescriptorSetting = tuple[str, "Callable[[np.ndarray], Descriptors]", int]


@dataclass
class BovwInputs:
    data: TrialData
    source_checkpoint: str | None
    source_layers: list[str]
    source_image_size: int | None
    data_key: str
    cache_dir: str


def check_config(config: dict[str, Any], n_classes: int, context: dict[str, Any] | None = None) -> None:
    context = context or {}
    check_svm_config(config)
    descriptor = config.get("descriptor", "sift")
    if descriptor not in DESCRIPTORS:
        raise ValueError(f"descriptor must be one of {DESCRIPTORS}, got {descriptor!r}")
    if descriptor == "learnt":
        if not context.get("has_source"):
            raise ValueError("learnt descriptors need --from, a patch_mlp experiment or checkpoint")
        layers = context.get("layers", [])
        if config.get("layer", "last") not in ["last", *layers]:
            raise ValueError(
                f"the source model has no layer {config['layer']!r}; its hidden layers are: {', '.join(layers)}"
            )
    if config.get("kernel", "rbf") not in BOVW_KERNELS:
        raise ValueError(f"kernel must be one of {BOVW_KERNELS}, got {config.get('kernel')!r}")
    if config.get("normalization", "l2") not in NORMALIZATIONS:
        raise ValueError(
            f"normalization must be one of {NORMALIZATIONS}, got {config.get('normalization')!r}"
        )
    if int(config.get("codebook_size", 2)) < 2:
        raise ValueError(f"codebook_size must be at least 2, got {config.get('codebook_size')}")
    if descriptor == "sift":
        side = int(config["image_size"])
        for key in ("sift_step", "sift_size"):
            if not 1 <= int(config[key]) <= side:
                raise ValueError(f"{key} {config[key]} must lie between 1 and the image size {side}")


def build_inputs(
    data: TrialData, source, values: Callable[[str], list], data_key: str, cache_dir: str | None
) -> BovwInputs:
    return BovwInputs(
        data=data,
        source_checkpoint=str(source.checkpoint) if source is not None else None,
        source_layers=source.hidden_layers if source is not None else [],
        source_image_size=int(source.description["image_size"]) if source is not None else None,
        data_key=data_key,
        cache_dir=str(
            (Path(cache_dir) if cache_dir else default_cache_dir()) / "bovw"
        ),  # beside the dataset cache
    )


def _descriptor_setting(config: dict[str, Any], inputs: BovwInputs) -> DescriptorSetting:
    """A key naming the descriptors, the function computing them, and the image size they need."""
    from trainables.descriptors import dense_sift, learnt_descriptors

    if config.get("descriptor", "sift") == "sift":
        step, size, side = int(config["sift_step"]), int(config["sift_size"]), int(config["image_size"])
        return f"sift|step={step}|size={size}|{side}px", lambda images: dense_sift(images, step, size), side
    layer = config.get("layer", "last")
    layer = inputs.source_layers[-1] if layer == "last" else layer
    checkpoint = Path(inputs.source_checkpoint)
    stamp = (checkpoint / "model.pt").stat().st_mtime_ns
    return (
        f"learnt|{checkpoint}@{stamp}|{layer}",
        lambda images: learnt_descriptors(checkpoint, images, layer),
        int(inputs.source_image_size),
    )


def _split_descriptors(
    setting: DescriptorSetting, inputs: BovwInputs, key: str
) -> tuple[dict[str, Descriptors], bool]:
    """Every split's descriptors under `key`, computed by the first trial that needs them."""
    from trainables.descriptors import Descriptors, cached_arrays

    _, compute, side = setting
    splits = inputs.data.at_size(side)

    def compute_all() -> dict[str, np.ndarray]:
        arrays: dict[str, np.ndarray] = {}
        for name in SPLITS:
            described = compute(splits[name].x)
            arrays[f"{name}_values"], arrays[f"{name}_index"] = described.values, described.image_index
        return arrays

    arrays, cached = cached_arrays(Path(inputs.cache_dir) / "descriptors", key, compute_all)
    descriptors = {
        name: Descriptors(arrays[f"{name}_values"], arrays[f"{name}_index"], len(splits[name]))
        for name in SPLITS
    }
    return descriptors, cached


def _with_validation_in_train(descriptors: dict[str, Descriptors]) -> dict[str, Descriptors]:
    """A refit's descriptors: train grows by the validation images (their indices follow train's)."""
    from trainables.descriptors import Descriptors

    train, val = descriptors["train"], descriptors["val"]
    merged = Descriptors(
        np.concatenate([train.values, val.values]),
        np.concatenate([train.image_index, val.image_index + train.n_images]),
        train.n_images + val.n_images,
    )
    return {**descriptors, "train": merged}


def _visual_words(
    setting: DescriptorSetting, inputs: BovwInputs, descriptor_key: str, k: int, seed: int, fit_on: str
) -> dict[str, np.ndarray]:
    """Each split's visual-word counts under a k-word codebook, from cached descriptors and codebook.

    Also records how many training descriptors there are (a codebook cannot have more words) and
    what came from the cache. A k larger than the descriptors gives no counts. A refit on train +
    validation (`fit_on`) learns its codebook from both.
    """
    from trainables.descriptors import cached_arrays, fit_codebook, word_histograms

    descriptors, descriptors_cached = _split_descriptors(setting, inputs, descriptor_key)
    if fit_on == TRAIN_AND_VAL:
        descriptors = _with_validation_in_train(descriptors)
    available = len(descriptors["train"].values)
    facts = {
        "available": np.array(available),
        "descriptors_per_image": np.array(available / descriptors["train"].n_images),
        "descriptors_cached": np.array(descriptors_cached),
    }
    if k > available:
        return facts
    arrays, codebook_cached = cached_arrays(
        Path(inputs.cache_dir) / "codebooks",
        f"{descriptor_key}|k={k}|seed={seed}|fit={fit_on}",
        lambda: {"centres": fit_codebook(descriptors["train"], k, seed)},
    )
    counts = {name: word_histograms(descriptors[name], arrays["centres"]).astype(np.int32) for name in SPLITS}
    return {**facts, **counts, "codebook_cached": np.array(codebook_cached)}


def train_bovw(config: dict[str, Any], inputs: BovwInputs) -> None:
    from ray import tune

    from trainables.descriptors import cached_arrays, inverse_document_frequency, normalize_histograms
    from trainables.predictions import report_with_test_predictions
    from trainables.svm import fit_and_score_svm, svm_report, with_validation_in_train

    started = time.perf_counter()
    setting = _descriptor_setting(config, inputs)
    descriptor_key = f"{inputs.data_key}|{setting[0]}"
    k, seed = int(config["codebook_size"]), int(config.get("seed", 0))
    fit_on = TRAIN_AND_VAL if trains_on_validation(config) else "train"
    # A trial that finds its counts cached loads n_images x k integers, not the descriptors: it costs
    # its SVM fit (benchmarks/run_benchmarks.py, measurement 3).
    counts_key = f"{descriptor_key}|k={k}|seed={seed}|fit={fit_on}"
    words, counts_cached = cached_arrays(
        Path(inputs.cache_dir) / "word_counts",
        counts_key,
        lambda: _visual_words(setting, inputs, descriptor_key, k, seed, fit_on),
    )
    available = int(words["available"])
    if k > available:
        # Reported, not raised: the sweep goes on and the table says why this trial has no score.
        tune.report(
            {
                "epoch": 1,
                "infeasible": True,
                "error_message": f"codebook_size {k} exceeds the {available} training descriptors",
                "val_acc": float("nan"),
                "best_val_acc": float("nan"),
                "trial_seconds": time.perf_counter() - started,
            }
        )
        return
    histograms = {name: words[name].astype(np.float64) for name in SPLITS}
    normalization, tfidf = config.get("normalization", "l2"), bool(config.get("tfidf"))
    idf = inverse_document_frequency(histograms["train"]) if tfidf else None
    features = {name: normalize_histograms(h, normalization, idf) for name, h in histograms.items()}
    labels = {name: inputs.data.at_size(next(iter(inputs.data.splits)))[name].y for name in SPLITS}
    if fit_on == TRAIN_AND_VAL:
        labels = with_validation_in_train(labels)
    features_key = f"{counts_key}|{normalization}|tfidf={tfidf}"
    result = fit_and_score_svm(config, features, labels, features_key)
    report = svm_report(
        result,
        started,
        bool(config.get("refit")),
        infeasible=False,
        word_counts_cached=counts_cached,
        descriptors_cached=counts_cached or bool(words["descriptors_cached"]),
        codebook_cached=counts_cached or bool(words["codebook_cached"]),
        descriptors_per_image=float(words["descriptors_per_image"]),
    )
    report_with_test_predictions(report, result.test_predicted, labels["test"])


class BovwTask(Task):
    space = bovw_space.SPACE
    source_kinds = ("patch_mlp",)

    def check_config(self, config: dict[str, Any], n_classes: int, context: dict[str, Any]) -> None:
        check_config(config, n_classes, context)

    def build_inputs(
        self,
        data: TrialData,
        source: Any,
        values: Callable[[str], list[Any]],
        data_key: str,
        cache_dir: str | None,
    ) -> BovwInputs:
        return build_inputs(data, source, values, data_key, cache_dir)

    def train(self, config: dict[str, Any], data: BovwInputs) -> None:
        train_bovw(config, data)

"""Task 4 as a Ray Tune trainable: descriptors -> k-means codebook -> visual-word histograms -> SVM."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from scenetune.data import TrialData, default_cache_dir
from scenetune.experiment import SELECT_BY_CROSS_VALIDATION, TRAIN_AND_VAL, trains_on_validation
from search_spaces import bovw as bovw_space
from trainables.array_cache import PastDeadline, cache_file, cached_arrays
from trainables.specs import MLPSpec, check_svm_config
from trainables.task import Task

if TYPE_CHECKING:
    from trainables.descriptors import Descriptors

SPLITS = ("train", "val", "test")

DESCRIPTORS = ("sift", "learnt")
NORMALIZATIONS = ("l1", "l2", "power")
BOVW_KERNELS = ("rbf", "linear", "intersection")
SIFT_DIMENSIONS = 128

# How a codebook is fitted (trainables.descriptors.kmeans_centres), here where the driver's cost
# estimate can read it without importing scikit-learn or OpenCV.
MAX_KMEANS_SAMPLES = 100_000
KMEANS_N_INIT = 3


def kmeans_batch_size(k: int) -> int:
    return max(1024, 4 * k)


def sift_grid(side: int, step: int, size: int) -> np.ndarray:
    """The keypoint centres of dense SIFT along each axis of a `side`-pixel image."""
    return np.arange(size / 2, side - size / 2 + 1e-9, step) if size < side else np.array([side / 2])


def codebook_fit_work(descriptors: int, dimensions: int, k: int) -> float:
    """The work of a codebook fit's k-means++ initialisations, which take most of its time (83% at
    k = 64, about 90% from k = 256 up on MIT_split's learnt descriptors; benchmarks/codebook_fit.py):
    each of KMEANS_N_INIT places k centres, each comparing 2 + ln k candidates with every descriptor
    of an initialisation sample of three batches. Its time thus grows as k squared until that sample
    holds every descriptor."""
    sample = min(descriptors, MAX_KMEANS_SAMPLES, 3 * kmeans_batch_size(k))
    return float(KMEANS_N_INIT * k * sample * dimensions * (2 + math.log(k)))


@dataclass(frozen=True)
class DescriptorSources:
    """Where a trial's descriptors come from and where they, its codebook and its counts are cached.
    Small: the driver's cost estimate (CodebookFitWork) keeps a copy with the searcher's state."""

    source_checkpoint: str | None
    source_layers: tuple[str, ...]
    source_widths: tuple[int, ...]  # the width of each of those layers
    source_image_size: int | None
    source_patches: int  # patches per image of the source model (0 without one)
    data_key: str
    cache_dir: str


@dataclass
class BovwInputs:
    data: TrialData
    sources: DescriptorSources


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


def build_inputs(data: TrialData, source, data_key: str, cache_dir: str | None) -> BovwInputs:
    spec = source.description["spec"] if source is not None else None
    sources = DescriptorSources(
        source_checkpoint=str(source.checkpoint) if source is not None else None,
        source_layers=tuple(source.hidden_layers) if source is not None else (),
        source_widths=tuple(MLPSpec(**spec["mlp"]).hidden_widths()) if spec else (),
        source_image_size=int(source.description["image_size"]) if source is not None else None,
        source_patches=(int(spec["image_size"]) // int(spec["patch_size"])) ** 2 if spec else 0,
        data_key=data_key,
        cache_dir=str(
            (Path(cache_dir) if cache_dir else default_cache_dir()) / "bovw"
        ),  # beside the dataset cache
    )
    return BovwInputs(data=data, sources=sources)


def _learnt_layer(config: dict[str, Any], sources: DescriptorSources) -> str:
    layer = config.get("layer", "last")
    return sources.source_layers[-1] if layer == "last" else layer


@dataclass(frozen=True)
class DescriptorSetting:
    """One setting of a trial's descriptors: the key naming them (data, kind, parameters; a retrained
    source model gets a new key), the image size they are computed at, how many each image gives and
    their width, and whether they were learnt from the train images' labels."""

    key: str
    side: int
    per_image: int
    dimensions: int
    learnt: bool
    sift_step: int = 0
    sift_size: int = 0
    checkpoint: str | None = None
    layer: str | None = None

    def compute(self, images: np.ndarray) -> Descriptors:
        from trainables.descriptors import dense_sift, learnt_descriptors

        if self.learnt:
            return learnt_descriptors(Path(self.checkpoint), images, self.layer)
        return dense_sift(images, self.sift_step, self.sift_size)


def descriptor_setting(config: dict[str, Any], sources: DescriptorSources) -> DescriptorSetting:
    if config.get("descriptor", "sift") == "sift":
        step, size, side = int(config["sift_step"]), int(config["sift_size"]), int(config["image_size"])
        return DescriptorSetting(
            key=f"{sources.data_key}|sift|step={step}|size={size}|{side}px",
            side=side,
            per_image=len(sift_grid(side, step, size)) ** 2,
            dimensions=SIFT_DIMENSIONS,
            learnt=False,
            sift_step=step,
            sift_size=size,
        )
    layer, checkpoint = _learnt_layer(config, sources), Path(sources.source_checkpoint)
    stamp = (checkpoint / "model.pt").stat().st_mtime_ns
    return DescriptorSetting(
        key=f"{sources.data_key}|learnt|{checkpoint}@{stamp}|{layer}",
        side=int(sources.source_image_size),
        per_image=sources.source_patches,
        dimensions=sources.source_widths[sources.source_layers.index(layer)],
        learnt=True,
        checkpoint=str(checkpoint),
        layer=layer,
    )


def _counts_key(config: dict[str, Any], descriptor_key: str, fit_on: str) -> str:
    """Names a codebook, and the word counts it gives: its descriptors, k, seed and training images."""
    k, seed = int(config["codebook_size"]), int(config.get("seed", 0))
    return f"{descriptor_key}|k={k}|seed={seed}|fit={fit_on}"


@dataclass(frozen=True)
class CodebookFitWork:
    """The cost model of a BoVW trial (scenetune.cost): its codebook fit is what can run past
    --max-trial-seconds (the descriptors are computed once per setting, the SVM solver is capped).
    A configuration whose codebook or counts are cached on this machine fits nothing: work 0."""

    what: ClassVar[str] = "codebook fit"
    sources: DescriptorSources
    train_images: int

    def work(self, config: dict[str, Any]) -> float | None:
        setting = descriptor_setting(config, self.sources)
        codebook_key = _counts_key(config, setting.key, "train")
        cache = Path(self.sources.cache_dir)
        if any(cache_file(cache / kind, codebook_key).is_file() for kind in ("codebooks", "word_counts")):
            return 0.0
        descriptors = setting.per_image * self.train_images
        return codebook_fit_work(descriptors, setting.dimensions, int(config["codebook_size"]))

    def seconds(self, result: dict[str, Any]) -> float | None:
        return result.get("codebook_fit_seconds")  # reported only by a trial that fitted its codebook


def _split_descriptors(setting: DescriptorSetting, inputs: BovwInputs) -> tuple[dict[str, Descriptors], bool]:
    """Every split's descriptors, computed by the first trial that needs them."""
    from trainables.descriptors import Descriptors

    splits = inputs.data.at_size(setting.side)

    def compute_all() -> dict[str, np.ndarray]:
        arrays: dict[str, np.ndarray] = {}
        for name in SPLITS:
            described = setting.compute(splits[name].x)
            arrays[f"{name}_values"], arrays[f"{name}_index"] = described.values, described.image_index
        return arrays

    arrays, cached = cached_arrays(Path(inputs.sources.cache_dir) / "descriptors", setting.key, compute_all)
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


@dataclass(frozen=True)
class Codebook:
    key: str  # _counts_key
    k: int
    seed: int
    fit_on: str  # "train", or TRAIN_AND_VAL for a refit
    deadline: float | None  # a time.perf_counter() value the fit must end by


def _visual_words(
    setting: DescriptorSetting, inputs: BovwInputs, codebook: Codebook
) -> dict[str, np.ndarray]:
    """Each split's visual-word counts under a k-word codebook, from cached descriptors and codebook.

    Also records how many training descriptors there are (a codebook cannot have more words), what
    came from the cache, and how long the codebook's fit took. A k larger than the descriptors gives
    no counts. A refit on train + validation learns its codebook from both. A fit that cannot end by
    `deadline` raises FitPastDeadline, and nothing is cached.

    The first trial of a descriptor setting computes its descriptors for every later trial (a dense
    SIFT grid of 4 pixels took 37-41 s on MIT_split), and a trial started meanwhile waits for them.
    Neither counts against the trial's limit, nor does loading them: the deadline moves by the time
    the descriptors took to get. Counted, they cut such trials as too_slow before their fit, and the
    searcher learnt to avoid a setting whose next trial would have run normally.
    """
    from trainables.descriptors import fit_codebook_by, word_histograms

    described = time.perf_counter()
    descriptors, descriptors_cached = _split_descriptors(setting, inputs)
    deadline = codebook.deadline
    if deadline is not None:
        deadline += time.perf_counter() - described
    if codebook.fit_on == TRAIN_AND_VAL:
        descriptors = _with_validation_in_train(descriptors)
    available = len(descriptors["train"].values)
    facts = {
        "available": np.array(available),
        "descriptors_per_image": np.array(available / descriptors["train"].n_images),
        "descriptors_cached": np.array(descriptors_cached),
    }
    if codebook.k > available:
        return facts
    fit_started = time.perf_counter()
    arrays, codebook_cached = cached_arrays(
        Path(inputs.sources.cache_dir) / "codebooks",
        codebook.key,
        lambda: {"centres": fit_codebook_by(descriptors["train"], codebook.k, codebook.seed, deadline)},
        deadline,
    )
    fit_seconds = time.perf_counter() - fit_started
    counts = {name: word_histograms(descriptors[name], arrays["centres"]).astype(np.int32) for name in SPLITS}
    return {
        **facts,
        **counts,
        "codebook_cached": np.array(codebook_cached),
        "codebook_fit_seconds": np.array(fit_seconds),
    }


def _codebook_too_slow_report(cut: PastDeadline, k: int, limit: float, started: float) -> dict[str, Any]:
    """A trial whose codebook its time limit cut (its fit, or its wait for another trial fitting the
    same codebook): stopped, not an error. The searcher sees the worst score for it, as for a network
    whose epoch the limit cut; the tables show `too_slow`."""
    return {
        "epoch": 1,
        "too_slow": True,
        "epoch_unfinished": True,
        "val_acc": 0.0,
        "best_val_acc": float("nan"),
        "test_acc": float("nan"),
        "error_message": f"{cut.what} could not finish within --max-trial-seconds {limit:g} ({k}-word codebook)",
        "trial_seconds": time.perf_counter() - started,
    }


def cross_validates(config: dict[str, Any], setting: DescriptorSetting, fit_on: str) -> bool:
    """Whether a trial is scored by cross-validation on train + validation (trainables/svm.py): a
    search trial, where the sweep allows it, on dense SIFT descriptors. Learnt descriptors come from a
    patch MLP trained on the train images' labels, so folds of train images score them on images that
    network has fitted. On MIT_split deep features scored 0.71 by such folds, 0.56 on validation and
    0.59 on test. Those trials are scored on the validation split, which the network has not seen."""
    return bool(config.get(SELECT_BY_CROSS_VALIDATION)) and fit_on == "train" and not setting.learnt


def train_bovw(config: dict[str, Any], inputs: BovwInputs) -> None:
    from ray import tune

    from trainables.descriptors import inverse_document_frequency, normalize_histograms
    from trainables.predictions import report_with_test_predictions
    from trainables.svm import fit_and_score_svm, svm_report, with_validation_in_train

    started = time.perf_counter()
    limit = config.get("max_trial_seconds")
    setting = descriptor_setting(config, inputs.sources)
    k, seed = int(config["codebook_size"]), int(config.get("seed", 0))
    fit_on = TRAIN_AND_VAL if trains_on_validation(config) else "train"
    # A trial that finds its counts cached loads n_images x k integers, not the descriptors: it costs
    # its SVM fit (benchmarks/run_benchmarks.py, measurement 3).
    counts_key = _counts_key(config, setting.key, fit_on)
    codebook = Codebook(counts_key, k, seed, fit_on, started + float(limit) if limit else None)
    try:
        words, counts_cached = cached_arrays(
            Path(inputs.sources.cache_dir) / "word_counts",
            counts_key,
            lambda: _visual_words(setting, inputs, codebook),
            codebook.deadline,
        )
    except PastDeadline as cut:
        tune.report(_codebook_too_slow_report(cut, k, float(limit), started))
        return
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
    result = fit_and_score_svm(
        config,
        features,
        labels,
        features_key,
        cross_validate_selection=cross_validates(config, setting, fit_on),
    )
    fitted = not counts_cached and not bool(words["codebook_cached"])
    report = svm_report(
        result,
        started,
        bool(config.get("refit")),
        infeasible=False,
        word_counts_cached=counts_cached,
        descriptors_cached=counts_cached or bool(words["descriptors_cached"]),
        codebook_cached=not fitted,
        descriptors_per_image=float(words["descriptors_per_image"]),
        # what the sweep's cost estimate calibrates its codebook fits by (scenetune.cost)
        **({"codebook_fit_seconds": float(words["codebook_fit_seconds"])} if fitted else {}),
    )
    report_with_test_predictions(report, result.test_predicted, labels["test"])


class BovwTask(Task):
    space = bovw_space.SPACE
    source_kinds = ("patch_mlp",)
    cross_validates_selection = True

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
        return build_inputs(data, source, data_key, cache_dir)

    def first_result_work(self, trial_data: TrialData, inputs: BovwInputs, n_classes: int) -> CodebookFitWork:
        return CodebookFitWork(inputs.sources, trial_data.split_sizes()["train"])

    def train(self, config: dict[str, Any], data: BovwInputs) -> None:
        train_bovw(config, data)

"""How sure a test accuracy is: a bootstrap interval over the test images, and paired comparisons of
two approaches on the same images (a paired bootstrap of the difference, and McNemar's exact test),
from the per-image predictions each trial's checkpoint keeps."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import stats

from scenetune.experiment import (
    REFIT_DIR,
    TEST_PREDICTIONS_FILE,
    TrialRecord,
    accuracy_standard_error,
    is_accuracy_score,
    load_trials,
)

CONFIDENCE = 0.95
RESAMPLES = 2000
PERMUTATIONS = 10000


def predictions_on_test(checkpoint: str | Path | None) -> tuple[np.ndarray, np.ndarray] | None:
    """Each test image's predicted and true class, as the checkpoint keeps them, or None."""
    if checkpoint is None or not isinstance(checkpoint, (str, Path)):
        return None
    path = Path(checkpoint) / TEST_PREDICTIONS_FILE
    if not path.is_file():
        return None
    with np.load(path) as saved:
        return saved["predicted"], saved["labels"]


def correct_on_test(checkpoint: str | Path | None) -> np.ndarray | None:
    """Whether the checkpoint's model got each test image right, or None if it kept no predictions."""
    predictions = predictions_on_test(checkpoint)
    return None if predictions is None else predictions[0] == predictions[1]


def checkpoint_interval(checkpoint: str | Path | None) -> tuple[float, float] | None:
    """The interval of a checkpoint's test accuracy, or None if it kept no predictions."""
    correct = correct_on_test(checkpoint)
    return None if correct is None else accuracy_interval(correct)


def accuracy_interval(correct: np.ndarray, seed: int = 0) -> tuple[float, float]:
    """The CONFIDENCE bootstrap interval (percentile) of the accuracy, resampling test images."""
    result = stats.bootstrap(
        (correct.astype(float),),
        np.mean,
        confidence_level=CONFIDENCE,
        n_resamples=RESAMPLES,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


@dataclass(frozen=True)
class NearBest:
    count: int  # scores besides the best within `margin` of it
    margin: float  # one standard error of the best score


def near_best(scores: Sequence[float], images: int) -> NearBest:
    """How many scores besides the best lie within one standard error of it. Where many do, the
    search's choice among them rests on a few images (the more trials, the more of them), and only
    a refit's test interval says how good the chosen configuration is."""
    accuracies = [score for score in scores if is_accuracy_score(score)]
    if not accuracies or images <= 0:
        return NearBest(0, 0.0)
    best = max(accuracies)
    margin = accuracy_standard_error(best, images)
    return NearBest(sum(1 for score in accuracies if score >= best - margin) - 1, margin)


@dataclass(frozen=True)
class Comparison:
    """Accuracy of a minus accuracy of b on the same test images, with its interval and p-value."""

    difference: float
    low: float
    high: float
    p_value: float  # McNemar's exact test, or a permutation test for refit shares (paired_comparison)
    images: int
    test: str = "McNemar"  # which test gave p_value

    @property
    def distinguishable(self) -> bool:
        """Whether the data can tell the two apart: the difference's interval excludes zero and McNemar's
        test rejects equal accuracy at the same level. Both must agree, because with few images that
        only one approach got right the percentile bootstrap is too ready to exclude zero."""
        return not self.low <= 0.0 <= self.high and self.p_value < 1.0 - CONFIDENCE


def paired_comparison(correct_a: np.ndarray, correct_b: np.ndarray, seed: int = 0) -> Comparison:
    """a minus b on the same test images. Each side is per image whether its model got it right, or
    the share of its refit models that did. For one model per side the p-value is McNemar's exact
    test; for shares it is a paired permutation test of the mean difference (each image's two values
    swapped at random), which weighs how far apart the shares are. A sign test on shares counts a
    share of 1 against 2/3 as much as 1 against 0: with three refits on one side and one on the
    other it found no difference where the interval found 4.5 points."""
    if correct_a.shape != correct_b.shape:
        raise ValueError(
            f"paired comparison needs the same test images, got {len(correct_a)} and {len(correct_b)}"
        )
    a, b = correct_a.astype(float), correct_b.astype(float)
    result = stats.bootstrap(
        (a, b),
        _mean_difference,
        paired=True,
        confidence_level=CONFIDENCE,
        n_resamples=RESAMPLES,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    binary = all(np.isin(x, (0.0, 1.0)).all() for x in (a, b))
    interval = result.confidence_interval
    return Comparison(
        float(a.mean() - b.mean()),
        float(interval.low),
        float(interval.high),
        _mcnemar_p_value(a, b) if binary else _permutation_p_value(a, b, seed),
        len(a),
        "McNemar" if binary else "permutation test",
    )


def _mean_difference(x: np.ndarray, y: np.ndarray, axis: int) -> np.ndarray:
    return np.mean(x, axis=axis) - np.mean(y, axis=axis)


def _mcnemar_p_value(a: np.ndarray, b: np.ndarray) -> float:
    """McNemar's exact test: a binomial test on the images exactly one of the two got right."""
    only_a, only_b = int(np.sum(a > b)), int(np.sum(b > a))
    return float(stats.binomtest(only_a, only_a + only_b, 0.5).pvalue) if only_a + only_b else 1.0


def _permutation_p_value(a: np.ndarray, b: np.ndarray, seed: int) -> float:
    if np.array_equal(a, b):
        return 1.0
    result = stats.permutation_test(
        (a, b),
        _mean_difference,
        permutation_type="samples",
        n_resamples=PERMUTATIONS,
        vectorized=True,
        rng=np.random.default_rng(seed),
    )
    return float(result.pvalue)


@dataclass(frozen=True)
class SpreadDifference:
    """How much more the accuracy of one group of rows spreads (best minus worst) than another's, over
    the same test images, with a paired bootstrap interval."""

    difference: float
    low: float
    high: float
    images: int

    @property
    def distinguishable(self) -> bool:
        return not self.low <= 0.0 <= self.high


def spread_difference(first: list[np.ndarray], second: list[np.ndarray], seed: int = 0) -> SpreadDifference:
    """Spread of the first group's accuracies minus the second's; each array is one row's correctness
    on the same test images, resampled together so that every row sees the same images."""
    rows = np.stack([r.astype(float) for r in (*first, *second)])
    split = len(first)

    def statistic(*images: np.ndarray, axis: int) -> np.ndarray:
        accuracy = np.stack([np.mean(row, axis=axis) for row in images])  # rows x resamples
        return np.ptp(accuracy[:split], axis=0) - np.ptp(accuracy[split:], axis=0)

    result = stats.bootstrap(
        tuple(rows),
        statistic,
        paired=True,
        vectorized=True,
        confidence_level=CONFIDENCE,
        n_resamples=RESAMPLES,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    observed = float(np.ptp(rows[:split].mean(axis=1)) - np.ptp(rows[split:].mean(axis=1)))
    interval = result.confidence_interval
    return SpreadDifference(observed, float(interval.low), float(interval.high), rows.shape[1])


@dataclass(frozen=True)
class RankCorrelation:
    """Spearman's correlation of two quantities over trials, with a permutation test's p-value."""

    rho: float
    p_value: float

    @property
    def distinguishable(self) -> bool:
        """Whether the data can tell the correlation from none at the study's level."""
        return self.p_value < 1.0 - CONFIDENCE


def rank_correlation(x: np.ndarray, y: np.ndarray, seed: int = 0) -> RankCorrelation:
    """Spearman's rho as Pearson's on ranks (ties share their mean rank). The p-value permutes one side:
    exact while n! <= PERMUTATIONS, so it stays honest for a handful of trials, where the usual t
    approximation calls a perfect rank order of 4 trials certain (its exact p is 1/12)."""
    result = stats.pearsonr(
        stats.rankdata(x),
        stats.rankdata(y),
        method=stats.PermutationMethod(n_resamples=PERMUTATIONS, rng=np.random.default_rng(seed)),
    )
    return RankCorrelation(float(result.statistic), float(result.pvalue))


@dataclass(frozen=True)
class RefitSummary:
    """The refit trials of an experiment's best configuration (--refit): test accuracy over seeds."""

    test_accs: tuple[float, ...]
    epochs: int
    train_on: str
    low: float  # CONFIDENCE bootstrap interval of the mean accuracy, resampling test images
    high: float
    correct: np.ndarray  # per test image, the share of the refit models that got it right

    @property
    def mean(self) -> float:
        return float(np.mean(self.test_accs))

    @property
    def std(self) -> float:
        return float(np.std(self.test_accs, ddof=1)) if len(self.test_accs) > 1 else 0.0

    def describe(self) -> str:
        return (
            f"{len(self.test_accs)} seed{'s' if len(self.test_accs) > 1 else ''}, {self.epochs} epochs on {self.train_on}: test_acc {self.mean:.4f} ± "
            f"{self.std:.4f} (mean ± std), 95% CI {self.low:.4f}-{self.high:.4f} over {len(self.correct)} test images"
        )


def refit_predictions(experiment_dir: Path) -> list[tuple[TrialRecord, np.ndarray, np.ndarray]]:
    """Each finished refit trial with its test images' predicted and true classes."""
    finished = [
        trial
        for trial in load_trials(Path(experiment_dir) / REFIT_DIR)
        if trial.last
        and int(trial.last.get("epoch", 0)) >= int(trial.config.get("epochs", 1))
        and trial.checkpoint is not None
    ]
    runs = [(trial, predictions_on_test(trial.checkpoint)) for trial in finished]
    return [(trial, *predictions) for trial, predictions in runs if predictions is not None]


def refit_summary(experiment_dir: Path) -> RefitSummary | None:
    """The experiment's finished refit trials, or None if it has none."""
    runs = [(trial, predicted == labels) for trial, predicted, labels in refit_predictions(experiment_dir)]
    if not runs:
        return None
    correct = np.mean([c.astype(float) for _, c in runs], axis=0)
    low, high = accuracy_interval(correct)
    config = runs[0][0].config
    return RefitSummary(
        tuple(float(trial.last["test_acc"]) for trial, _ in runs),
        int(config["epochs"]),
        str(config["refit_train_on"]),
        low,
        high,
        correct,
    )

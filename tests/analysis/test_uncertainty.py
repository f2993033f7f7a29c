"""Intervals over test images and paired comparisons, and the conclusions that use them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analysis import study as comparison
from analysis.uncertainty import accuracy_interval, near_best, paired_comparison
from scenetune.cli import near_best_note


def _correct(rate: float, n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).random(n) < rate


def test_the_interval_holds_the_accuracy_and_narrows_with_more_images() -> None:
    small, large = _correct(0.7, 100, 0), _correct(0.7, 2000, 0)
    low, high = accuracy_interval(small)
    assert low < small.mean() < high
    large_low, large_high = accuracy_interval(large)
    assert large_high - large_low < (high - low) / 2


def test_trials_within_one_standard_error_of_the_best_are_counted_as_near_ties() -> None:
    # On 282 validation images one standard error of 0.70 is 0.027: 0.695 and 0.68 lie within it.
    scores = [0.60, 0.70, 0.695, 0.68, 0.67]
    assert near_best(scores, 282).count == 2
    # Ten times the images shrink the error to 0.009: only 0.695 is left within it.
    assert near_best(scores, 2820).count == 1
    assert near_best([0.70], 282).count == 0 and near_best([], 282).count == 0
    assert near_best([0.70, -1.0], 282).count == 0  # a trial that never scored (diverged) is not a score


def test_the_sweep_says_when_its_choice_rests_on_a_few_validation_images() -> None:
    note = near_best_note([0.60, 0.70, 0.69, 0.68], 282, refit=True)
    assert note is not None
    assert "2 other trial(s) score within one standard error of the best" in note
    assert "(0.027, 8 of 282 images)" in note and "the refit's interval" in note
    assert "--refit 3" in near_best_note([0.70, 0.69], 282, refit=False)
    assert near_best_note([0.70, 0.50], 282, refit=False) is None  # a clear winner needs no note


def test_paired_comparison_uses_only_the_images_the_two_disagree_on() -> None:
    a = np.array([True] * 60 + [False] * 40)
    b = np.array([True] * 50 + [False] * 10 + [False] * 35 + [True] * 5)  # a alone right on 10, b alone on 5
    result = paired_comparison(a, b)
    assert result.difference == pytest.approx(0.05)
    assert result.p_value == pytest.approx(stats.binomtest(10, 15, 0.5).pvalue)  # McNemar's exact test
    same = paired_comparison(a, a.copy())
    assert same.difference == 0 and same.p_value == 1.0 and not same.distinguishable
    with pytest.raises(ValueError, match="same test images"):
        paired_comparison(a, a[:10])


def _approaches(values: dict[str, float]) -> pd.DataFrame:
    return comparison.approaches_frame(
        [{"approach": a, "val_acc": v, "test_acc": v} for a, v in values.items()]
    )


def test_conclusions_say_when_the_data_cannot_tell() -> None:
    n = 500
    patch = _correct(0.77, n, 1)
    close = patch.copy()
    close[np.flatnonzero(close)[:5]] = False  # one point lower, on the same images otherwise
    mlp = _correct(0.55, n, 2)
    svm = mlp.copy()
    svm[np.flatnonzero(~svm)[:3]] = True  # three images more than the MLP, the same otherwise
    correctness = {
        comparison.PATCH_MLP: patch,
        comparison.BOVW_LEARNT: close,
        comparison.MLP: mlp,
        comparison.FEATURE_SVM: svm,
    }
    accuracies = {name: float(correct.mean()) for name, correct in correctness.items()}
    sentences = comparison.conclusions(_approaches(accuracies), None, correctness)
    assert (
        sentences[0].startswith("Patch MLP has the highest test accuracy")
        and "cannot tell it apart from BoVW, learnt" in sentences[0]
    )
    assert any(s.startswith("Patch MLP beat end-to-end MLP by") and "McNemar p = " in s for s in sentences)
    assert any(
        s.startswith("Deep features + SVM and end-to-end MLP are not distinguishable") for s in sentences
    )
    # The winner's sentence already compares the two; the study's own comparison of them is not repeated.
    assert not any(s.startswith("BoVW, learnt descriptors and patch MLP") for s in sentences)
    far = dict(correctness)
    far[comparison.BOVW_LEARNT] = _correct(0.40, n, 3)
    accuracies = {name: float(correct.mean()) for name, correct in far.items()}
    assert comparison.conclusions(_approaches(accuracies), None, far)[0].startswith(
        "Patch MLP wins with test accuracy"
    )


def test_refit_shares_are_compared_with_a_paired_permutation_test_that_weighs_how_far_apart() -> None:
    # Per image, the share of three refit models right on it (a) against one model (b). a is ahead by a
    # whole model on 150 images and behind by a third of one on 170: a sign test (150 vs 170) sees
    # nothing, yet a's accuracy is 11 points higher.
    a = np.array([1.0] * 150 + [2 / 3] * 170 + [1.0] * 300 + [0.0] * 180)
    b = np.array([0.0] * 150 + [1.0] * 170 + [1.0] * 300 + [0.0] * 180)
    assert stats.binomtest(150, 320, 0.5).pvalue > 0.2
    result = paired_comparison(a, b)
    assert result.test == "permutation test"
    assert result.difference == pytest.approx(a.mean() - b.mean()) == pytest.approx((150 - 170 / 3) / 800)
    assert result.p_value < 0.001 and result.distinguishable
    assert paired_comparison(a > 0.5, b > 0.5).test == "McNemar"
    # Each image's two values handed to the sides at random: no side is better.
    swap = np.random.default_rng(3).random(a.size) < 0.5
    assert paired_comparison(np.where(swap, a, b), np.where(swap, b, a)).p_value > 0.05
    assert paired_comparison(a, a).p_value == 1.0


def test_the_headline_is_the_refit_mean_where_there_are_refits() -> None:
    n = 400
    rows = [
        {
            "approach": comparison.PATCH_MLP,
            "val_acc": 0.7,
            "test_acc": 0.70,
            "refit_test_acc": 0.60,
            "refit_seeds": 3,
        },
        {
            "approach": comparison.MLP,
            "val_acc": 0.6,
            "test_acc": 0.65,
            "refit_test_acc": 0.64,
            "refit_seeds": 3,
        },
    ]
    correctness = {comparison.PATCH_MLP: _correct(0.60, n, 5), comparison.MLP: _correct(0.64, n, 6)}
    first = comparison.conclusions(comparison.approaches_frame(rows), None, correctness)[0]
    # The best single trial is the patch MLP's, but its refits fell below the MLP's.
    assert first.startswith("End-to-end MLP ") and "0.640, mean of 3 refits" in first

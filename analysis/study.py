"""The study's comparison: one row per approach, and conclusions computed from the numbers."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from analysis.results import CONFIG_PREFIX, Experiment
from analysis.uncertainty import (
    Comparison,
    RankCorrelation,
    RefitSummary,
    checkpoint_interval,
    correct_on_test,
    paired_comparison,
    rank_correlation,
)
from scenetune.experiment import describe_config, is_present
from scenetune.study_steps import BOVW_LEARNT, BOVW_SIFT, CNN_REFERENCE, FEATURE_SVM, MLP, PATCH_MLP

APPROACH_COLUMNS = [
    "approach",
    "task",
    "experiment",
    "best_config",
    "val_acc",
    "test_acc",
    "test_acc_low",  # the 95% bootstrap interval over test images
    "test_acc_high",
    "refit_test_acc",  # mean over the refit seeds (--refit), with their std and the interval over test images
    "refit_std",
    "refit_low",
    "refit_high",
    "refit_seeds",
    "trials",
    "trial_epochs",
    "compute_seconds",
]
TIE_POINTS = 0.5  # differences below half a point are reported as a tie


def approach_row(approach: str, experiment: Experiment, refits: RefitSummary | None) -> dict[str, Any]:
    """The approach's best trial (chosen on validation accuracy), its refits (`refit_summary` of its
    folder) and what the search cost."""
    trials = experiment.trials
    row: dict[str, Any] = {
        "approach": approach,
        "task": experiment.task,
        "experiment": experiment.name,
        "trials": len(trials),
        "trial_epochs": int(trials["epochs_run"].sum()) if len(trials) else 0,
        "compute_seconds": float(pd.to_numeric(trials.get("trial_seconds"), errors="coerce").fillna(0).sum())
        if len(trials)
        else 0.0,
    }
    best = experiment.best_row()
    if best is None:
        return {**row, "best_config": "no finished trial", "val_acc": None, "test_acc": None}
    config = experiment.config_of(best)
    low, high = checkpoint_interval(best["checkpoint"]) or (None, None)
    return {
        **row,
        "best_config": describe_config(config, experiment.defaults),
        "val_acc": float(best["val_acc"]),
        "test_acc": _float(best["test_acc"]),
        "test_acc_low": low,
        "test_acc_high": high,
        "cv_folds": int(best["cv_folds"]),  # for the report's note, not a table column
        **_refit_columns(refits),
    }


def _refit_columns(summary: RefitSummary | None) -> dict[str, float | None]:
    if summary is None:
        return {"refit_test_acc": None, "refit_std": None, "refit_low": None, "refit_high": None}
    return {
        "refit_test_acc": summary.mean,
        "refit_std": summary.std,
        "refit_low": summary.low,
        "refit_high": summary.high,
        "refit_seeds": len(summary.test_accs),
    }


def approach_correctness(experiment: Experiment, refits: RefitSummary | None) -> np.ndarray | None:
    """Per test image, the share of the approach's refit models that got it right, or, without refits,
    whether its best trial did (None if it kept no predictions). The same models as its headline."""
    if refits is not None:
        return refits.correct
    best = experiment.best_row()
    return None if best is None else correct_on_test(best["checkpoint"])


def _headline(row: pd.Series) -> float | None:
    """What the study quotes for an approach: the refit mean where there are refits, else its best
    trial's test accuracy."""
    for column in ("refit_test_acc", "test_acc"):
        if column in row and is_present(row[column]):
            return float(row[column])
    return None


def _stated(row: pd.Series) -> str:
    if "refit_test_acc" in row and is_present(row["refit_test_acc"]):
        seeds = int(row["refit_seeds"])
        return f"{row['refit_test_acc']:.3f}, " + (f"mean of {seeds} refits" if seeds > 1 else "one refit")
    return f"{row['test_acc']:.3f}"


def _float(value: Any) -> float | None:
    return float(value) if is_present(value) else None


def _points(a: float, b: float) -> str:
    return f"{abs(a - b) * 100:.1f} points"


def _accuracy(approaches: pd.DataFrame, approach: str) -> float | None:
    rows = approaches[approaches["approach"] == approach]
    return None if rows.empty else _headline(rows.iloc[0])


def _interval_text(comparison: Comparison) -> str:
    return (
        f"difference {comparison.difference * 100:+.1f} points, 95% CI [{comparison.low * 100:+.1f}, "
        f"{comparison.high * 100:+.1f}] over {comparison.images} test images, {comparison.test} p = {comparison.p_value:.2g}"
    )


def _compare(
    approaches: pd.DataFrame,
    first: str,
    second: str,
    better: str,
    worse: str,
    correctness: dict[str, np.ndarray] | None = None,
) -> str | None:
    a, b = _accuracy(approaches, first), _accuracy(approaches, second)
    if a is None or b is None:
        return None
    paired = _paired(correctness, first, second)
    if paired is not None:  # the same test images: a paired test says whether the data can tell
        if not paired.distinguishable:
            return f"{first} and {second} are not distinguishable on test accuracy ({a:.3f} vs {b:.3f}; {_interval_text(paired)})."
        verb = better if paired.difference > 0 else worse
        return f"{first} {verb} {second} by {_points(a, b)} of test accuracy ({a:.3f} vs {b:.3f}; {_interval_text(paired)})."
    if abs(a - b) * 100 < TIE_POINTS:
        return f"{first} and {second} are level on test accuracy ({a:.3f} vs {b:.3f})."
    verb = better if a > b else worse
    return f"{first} {verb} {second} by {_points(a, b)} of test accuracy ({a:.3f} vs {b:.3f})."


def _paired(correctness: dict[str, np.ndarray] | None, first: str, second: str) -> Comparison | None:
    if not correctness or first not in correctness or second not in correctness:
        return None
    if correctness[first].shape != correctness[second].shape:
        return None
    return paired_comparison(correctness[first], correctness[second])


def _depth_versus_width(mlp_trials: pd.DataFrame | None) -> str | None:
    """Whether validation accuracy followed depth or width among the MLP trials, claimed only where a
    permutation test can tell the rank correlation from none."""
    if mlp_trials is None or len(mlp_trials) < 4:
        return None
    columns = {"depth": CONFIG_PREFIX + "depth", "width": CONFIG_PREFIX + "width"}
    if not all(c in mlp_trials for c in columns.values()):
        return None
    scored = mlp_trials[mlp_trials["val_acc"].notna()]
    if len(scored) < 4:
        return None
    values = {name: pd.to_numeric(scored[column], errors="coerce") for name, column in columns.items()}
    if any(v.isna().any() or v.nunique() < 2 for v in values.values()):
        return None
    accuracy = scored["val_acc"].astype(float).to_numpy()
    depth, width = (rank_correlation(values[name].to_numpy(), accuracy) for name in columns)
    summary = (
        f"Among {len(scored)} MLP trials, Spearman correlation of validation accuracy with depth is "
        f"{depth.rho:+.2f} (p = {depth.p_value:.2g}) and with width {width.rho:+.2f} (p = {width.p_value:.2g})"
    )
    return summary + _depth_width_verdict(depth, width)


def _depth_width_verdict(depth: RankCorrelation, width: RankCorrelation) -> str:
    told = {name: c.rho for name, c in (("depth", depth), ("width", width)) if c.distinguishable}
    helped = {name: rho for name, rho in told.items() if rho > 0}
    if helped:
        return (
            ": deeper beat wider."
            if max(helped, key=helped.__getitem__) == "depth"
            else ": wider beat deeper."
        )
    if told:  # every correlation the data can tell is negative
        return f": more {' and more '.join(told)} hurt, and neither helped."
    return ": the data cannot tell either from no effect."


def conclusions(
    approaches: pd.DataFrame,
    mlp_trials: pd.DataFrame | None = None,
    correctness: dict[str, np.ndarray] | None = None,
) -> list[str]:
    """Sentences computed from the numbers: they change whenever the numbers do. With each approach's
    per-image test results (`correctness`), comparisons are paired tests, and a winner is named only
    where the data can tell it apart from the runner-up."""
    # The winner is named among the study's approaches; the CNN is a reference, compared on its own.
    studied = approaches[approaches["approach"] != CNN_REFERENCE]
    scored = studied.assign(headline=studied.apply(_headline, axis=1))
    scored = scored[scored["headline"].map(is_present)].sort_values(["headline", "val_acc"], ascending=False)
    sentences = []
    stated_pair: set[str] = set()
    if len(scored) >= 2:
        first, second = scored.iloc[0], scored.iloc[1]
        stated_pair = {first["approach"], second["approach"]}
        paired = _paired(correctness, first["approach"], second["approach"])
        if paired is not None and not paired.distinguishable:
            sentences.append(
                f"{first['approach']} has the highest test accuracy ({_stated(first)}), but the data cannot tell it "
                f"apart from {second['approach']} ({_stated(second)}; {_interval_text(paired)})."
            )
        else:
            detail = f"; {_interval_text(paired)}" if paired is not None else ""
            sentences.append(
                f"{first['approach']} wins with test accuracy {_stated(first)}, "
                f"{_points(first['headline'], second['headline'])} ahead of {second['approach']} ({_stated(second)}{detail})."
            )
    elif len(scored) == 1:
        sentences.append(
            f"Only {scored.iloc[0]['approach']} finished, with test accuracy {_stated(scored.iloc[0])}."
        )
    comparisons = [
        (BOVW_LEARNT, BOVW_SIFT, "beat", "fell behind"),
        (FEATURE_SVM, MLP, "improved on", "fell short of"),
        (PATCH_MLP, MLP, "beat", "fell behind"),
        (BOVW_LEARNT, PATCH_MLP, "beat", "fell behind"),
    ]
    for first, second, better, worse in comparisons:
        if {first, second} == stated_pair:  # the winner's sentence already compares these two
            continue
        sentence = _compare(approaches, first, second, better, worse, correctness)
        if sentence:
            sentences.append(sentence)
    reference = _reference_sentence(approaches, scored, correctness)
    if reference:
        sentences.append(reference)
    depth_width = _depth_versus_width(mlp_trials)
    if depth_width:
        sentences.append(depth_width)
    return [sentence[0].upper() + sentence[1:] for sentence in sentences]


def _reference_sentence(
    approaches: pd.DataFrame, scored: pd.DataFrame, correctness: dict[str, np.ndarray] | None
) -> str | None:
    """Where the reference CNN stands against the best of the study's approaches, tested like the rest."""
    reference = _accuracy(approaches, CNN_REFERENCE)
    if reference is None or not len(scored):
        return None
    best = scored.iloc[0]
    relation = "above" if reference > best["headline"] else "below"
    sentence = (
        f"The {CNN_REFERENCE} reaches test accuracy {reference:.3f}, {_points(reference, best['headline'])} {relation} "
        f"the best of the study's approaches ({best['approach']}, {_stated(best)}"
    )
    paired = _paired(correctness, CNN_REFERENCE, best["approach"])
    if paired is None:
        return sentence + ")."
    if not paired.distinguishable:
        return sentence + f"), but the data cannot tell the two apart ({_interval_text(paired)})."
    return sentence + f"; {_interval_text(paired)})."


def approaches_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=APPROACH_COLUMNS)

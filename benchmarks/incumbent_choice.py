"""Which trial should a search hand on: the one with the best validation score (the baseline, what
scenetune does), the one a model of the search's results rates best, or its best prior unless a
searched trial beats that by more than the noise of one score?

Where the validation split is small (282 images on MIT_split), the best single score of a few
hundred trials is partly luck, and the top is often a tie. Noisy Bayesian optimisation answers this
by choosing the configuration with the best posterior mean of a Gaussian process fitted to all the
trials (scikit-learn's GaussianProcessRegressor, an anisotropic RBF kernel plus white noise, fitted
by marginal likelihood), so that a trial counts for more when its neighbours score well too. The
prior guard answers it the way the one-standard-error rule does: a search with priors (the task's
defaults and the study's known-good points) hands on its best prior unless a searched trial scores
more than one binomial standard error above it on the validation split. This
reads the trials of the searches that `benchmarks/search_quality.py` kept in its --storage and
measures, per search, the test accuracy of the trial each rule picks and its shortfall from the best
test accuracy among that search's trials (the regret). All three come from models trained on train
alone (each trial's own test accuracy), so no refit enters them.

    .venv/bin/python benchmarks/search_quality.py --approaches mlp feature_svm patch_mlp bovw_learnt
    .venv/bin/python benchmarks/incumbent_choice.py [--storage DIR] [--out BENCHMARKS.md]

The figures go to benchmarks/incumbent_choice.json and into BENCHMARKS.md between the markers.
"""

from __future__ import annotations

import math
import sys
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.gaussian_process import GaussianProcessRegressor  # noqa: E402
from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel  # noqa: E402

from benchmarks.sections import publish, search_folders, search_reader_parser  # noqa: E402
from scenetune.experiment import (  # noqa: E402
    RUN_KEYS,
    RUN_TO_LIMIT,
    accuracy_standard_error,
    describe_config,
    load_trials,
    read_experiment_record,
)

START, END = "<!-- incumbent_choice:start -->", "<!-- incumbent_choice:end -->"
# search_quality.py's searching run folders of the approaches that choose on the validation split
# (dense-SIFT BoVW cross-validates instead); only the network searches with priors, which are few
# trials each, and whose priors the guard can keep
SEARCHES = ("s*-feature_svm-random*", "s*-feature_svm-scenetune*", "s*-feature_svm-no_prior*")
SEARCHES += ("s*-bovw_learnt-random*", "s*-bovw_learnt-scenetune*", "s*-bovw_learnt-no_prior*")
SEARCHES += ("s*-mlp-scenetune*", "s*-patch_mlp-scenetune*")
MIN_TRIALS = 8  # fewer points than this cannot fit a kernel with a length scale per parameter


@dataclass(frozen=True)
class Tested:
    config: dict[str, Any]
    val: float
    test: float
    # marked run_to_limit by the sweep's cost estimate, which deep-feature + SVM trials skip, so
    # their priors read False here (the guard then reads n/a for those searches)
    prior: bool


@dataclass(frozen=True)
class Pick:
    search: str
    trials: int
    tied_at_top: int
    best_test: float
    by_best_score: float
    by_model: float | None  # None below MIN_TRIALS
    by_prior_guard: float | None  # None for a search without priors
    guard_kept_prior: bool = False  # the guard handed on a prior where the best score is a searched trial
    guard_pick: str = ""  # the guard's pick as its changes from the task's defaults


def tested_trials(search: Path) -> list[Tested]:
    """Each scored trial's configuration, and its validation and test accuracy at its best epoch, in the
    order `best_trial` reads them (ties go to the earlier)."""
    trials = []
    for trial in load_trials(search):
        report = trial.best_report()
        if math.isfinite(report.get("val_acc", math.nan)) and math.isfinite(report.get("test_acc", math.nan)):
            prior = bool(trial.config.get(RUN_TO_LIMIT))
            trials.append(Tested(trial.config, report["val_acc"], report["test_acc"], prior))
    return trials


def _column(values: Sequence[Any]) -> np.ndarray | None:
    """One parameter as model inputs: numbers standardised (on a log scale where they span a factor of
    10 or more), anything else one-hot; None for a parameter that never varies."""
    if len({repr(v) for v in values}) < 2:
        return None
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        x = np.asarray(values, dtype=float)
        if x.min() > 0 and x.max() / x.min() >= 10:
            x = np.log(x)
        return ((x - x.mean()) / x.std())[:, None]
    levels = sorted({repr(v) for v in values})
    return np.array([[repr(v) == level for level in levels] for v in values], dtype=float)


def encoded(configs: Sequence[Mapping[str, Any]]) -> np.ndarray:
    keys = sorted({key for config in configs for key in config} - RUN_KEYS)
    columns = [_column([config.get(key) for config in configs]) for key in keys]
    return np.hstack([c for c in columns if c is not None])


def model_pick(trials: Sequence[Tested]) -> int:
    """The trial with the best posterior mean of a Gaussian process fitted to every trial's score."""
    x = encoded([t.config for t in trials])
    y = np.array([t.val for t in trials])
    kernel = ConstantKernel() * RBF(length_scale=np.ones(x.shape[1])) + WhiteKernel()
    with warnings.catch_warnings():  # a length scale at its bound: a parameter that does not matter
        warnings.simplefilter("ignore", ConvergenceWarning)
        fitted = GaussianProcessRegressor(
            kernel, normalize_y=True, n_restarts_optimizer=2, random_state=0
        ).fit(x, y)
    return int(np.argmax(fitted.predict(x)))


def prior_guard_pick(trials: Sequence[Tested], best: int, validation_images: int) -> int | None:
    """The best prior, unless the best trial (`best`, the best score's pick) scores more than one
    standard error of the prior's score above it (ties go to the earlier, as in `best_trial`); None
    for a search without priors."""
    priors = [i for i, t in enumerate(trials) if t.prior]
    if not priors:
        return None
    best_prior = max(priors, key=lambda i: (trials[i].val, -i))
    noise = accuracy_standard_error(trials[best_prior].val, validation_images)
    return best if trials[best].val - trials[best_prior].val > noise else best_prior


def pick(search: Path) -> Pick | None:
    trials = tested_trials(search)
    has_priors = any(t.prior for t in trials)
    if len(trials) < MIN_TRIALS and not has_priors:
        return None
    val = np.array([t.val for t in trials])
    test = np.array([t.test for t in trials])
    by_best_score = int(np.argmax(val))
    record = read_experiment_record(search)
    guarded = prior_guard_pick(trials, by_best_score, record["data"]["sizes"]["val"])
    return Pick(
        search.name,
        len(trials),
        int((val == val.max()).sum()),
        float(test.max()),
        float(test[by_best_score]),
        float(test[model_pick(trials)]) if len(trials) >= MIN_TRIALS else None,
        None if guarded is None else float(test[guarded]),
        guarded is not None and trials[guarded].prior and not trials[by_best_score].prior,
        "" if guarded is None else describe_config(trials[guarded].config, record["defaults"], limit=3),
    )


def rule_against_best_score(picks: Sequence[Pick], rule: str) -> dict[str, Any]:
    """Over the searches a rule applies to: its mean regret and the best score's, and in how many it
    picks a trial that tests higher or lower than the best score's pick."""
    applied = [p for p in picks if getattr(p, rule) is not None]
    return {
        "searches": len(applied),
        "mean_regret": float(np.mean([p.best_test - getattr(p, rule) for p in applied])),
        "best_score_mean_regret": float(np.mean([p.best_test - p.by_best_score for p in applied])),
        "better": sum(getattr(p, rule) > p.by_best_score for p in applied),
        "worse": sum(getattr(p, rule) < p.by_best_score for p in applied),
    }


def figures(picks: list[Pick]) -> dict:
    return {
        "searches": len(picks),
        "model": rule_against_best_score(picks, "by_model"),
        "prior_guard": rule_against_best_score(picks, "by_prior_guard"),
        "guard_kept_prior": sum(p.guard_kept_prior for p in picks),
        "picks": [asdict(p) for p in picks],
    }


def _points(value: float | None, baseline: float) -> str:
    return "n/a" if value is None else f"{100 * (value - baseline):+.1f}"


def _test(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _comparison(name: str, figures: Mapping[str, Any]) -> str:
    same = figures["searches"] - figures["better"] - figures["worse"]
    return (
        f"{name}, over the {figures['searches']} searches it applies to: mean regret (points below the best "
        f"test accuracy among a search's trials) {100 * figures['mean_regret']:.2f} against the best score's "
        f"{100 * figures['best_score_mean_regret']:.2f}; its pick tests higher in {figures['better']} searches, "
        f"lower in {figures['worse']}, the same in {same}."
    )


def section(result: dict, storage: Path) -> str:
    rows = "\n".join(
        f"| {p['search']} | {p['trials']} | {p['tied_at_top']} | {p['best_test']:.3f} | {p['by_best_score']:.3f} | "
        f"{_test(p['by_model'])} | {_points(p['by_model'], p['by_best_score'])} | {_test(p['by_prior_guard'])} | "
        f"{_points(p['by_prior_guard'], p['by_best_score'])} | {p['guard_pick'] or 'n/a'} |"
        for p in result["picks"]
    )
    return "\n".join(
        [
            START,
            "## Which trial a search hands on: its best validation score, a model's best posterior mean, or its "
            "best prior unless beaten by more than one standard error (`python benchmarks/incumbent_choice.py`)",
            "",
            f"{result['searches']} searches in `{storage}` (made by `benchmarks/search_quality.py`): deep features "
            "+ SVM and learnt BoVW, and the network searches with priors, whose trials are chosen on the "
            "validation split. Test accuracies are the trials' own (trained on train alone), at each trial's best "
            "epoch. Baseline: the trial with the best validation score. The model needs "
            f"{MIN_TRIALS} trials; the prior guard needs priors (n/a otherwise).",
            "",
            _comparison("The model", result["model"]),
            _comparison("The prior guard", result["prior_guard"])
            + f" It handed on a prior in place of a searched trial in {result['guard_kept_prior']} searches.",
            "",
            "| search | trials | tied at the top | best test | test of the best score's pick | of the model's pick "
            "| model - best score, points | of the prior guard's pick | guard - best score, points | the guard's pick |",
            "|---|---|---|---|---|---|---|---|---|---|",
            rows,
            END,
        ]
    )


def main() -> int:
    parser = search_reader_parser(__doc__.split("\n\n")[0], "incumbent_choice")
    args = parser.parse_args()
    searches = search_folders(args.storage, *SEARCHES)
    picks = [p for p in map(pick, searches) if p is not None]
    if not picks:
        parser.error(
            f"{args.storage} holds no search of {MIN_TRIALS} or more tested trials; run search_quality.py first"
        )
    result = figures(picks)
    publish(args, result, START, END, section(result, args.storage))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

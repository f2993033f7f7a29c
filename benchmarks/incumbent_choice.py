"""Which trial should a search hand on: the one with the best validation score (the baseline, what
scenetune does), or the one a model of the search's results rates best?

Where the validation split is small (282 images on MIT_split), the best single score of a few
hundred trials is partly luck, and the top is often a tie. Noisy Bayesian optimisation answers this
by choosing the configuration with the best posterior mean of a Gaussian process fitted to all the
trials (scikit-learn's GaussianProcessRegressor, an anisotropic RBF kernel plus white noise, fitted
by marginal likelihood), so that a trial counts for more when its neighbours score well too. This
reads the trials of the searches that `benchmarks/search_quality.py` kept in its --storage and
measures, per search, the test accuracy of the trial each rule picks and its shortfall from the best
test accuracy among that search's trials (the regret). All three come from models trained on train
alone (each trial's own test accuracy), so no refit enters them.

    .venv/bin/python benchmarks/search_quality.py --approaches feature_svm bovw_learnt   # the searches
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
from scenetune.experiment import RUN_KEYS, load_trials  # noqa: E402

START, END = "<!-- incumbent_choice:start -->", "<!-- incumbent_choice:end -->"
# search_quality.py's searching run folders of the two approaches that choose on the validation split
SEARCHES = ("s*-feature_svm-random*", "s*-feature_svm-scenetune*", "s*-feature_svm-no_prior*")
SEARCHES += ("s*-bovw_learnt-random*", "s*-bovw_learnt-scenetune*", "s*-bovw_learnt-no_prior*")
MIN_TRIALS = 8  # fewer points than this cannot fit a kernel with a length scale per parameter


@dataclass(frozen=True)
class Tested:
    config: dict[str, Any]
    val: float
    test: float


@dataclass(frozen=True)
class Pick:
    search: str
    trials: int
    tied_at_top: int
    best_test: float
    by_best_score: float
    by_model: float


def tested_trials(search: Path) -> list[Tested]:
    """Each scored trial's configuration, and its validation and test accuracy at its best epoch, in the
    order `best_trial` reads them (ties go to the earlier)."""
    trials = []
    for trial in load_trials(search):
        report = trial.best_report()
        if math.isfinite(report.get("val_acc", math.nan)) and math.isfinite(report.get("test_acc", math.nan)):
            trials.append(Tested(trial.config, report["val_acc"], report["test_acc"]))
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


def pick(search: Path) -> Pick | None:
    trials = tested_trials(search)
    if len(trials) < MIN_TRIALS:
        return None
    val = np.array([t.val for t in trials])
    test = np.array([t.test for t in trials])
    return Pick(
        search.name,
        len(trials),
        int((val == val.max()).sum()),
        float(test.max()),
        float(test[int(np.argmax(val))]),
        float(test[model_pick(trials)]),
    )


def figures(picks: list[Pick]) -> dict:
    def mean_regret(rule: str) -> float:
        return float(np.mean([p.best_test - getattr(p, rule) for p in picks]))

    return {
        "searches": len(picks),
        "mean_regret": {"best score": mean_regret("by_best_score"), "model": mean_regret("by_model")},
        "model_better": sum(p.by_model > p.by_best_score for p in picks),
        "model_worse": sum(p.by_model < p.by_best_score for p in picks),
        "picks": [asdict(p) for p in picks],
    }


def section(result: dict, storage: Path) -> str:
    regret = result["mean_regret"]
    rows = "\n".join(
        f"| {p['search']} | {p['trials']} | {p['tied_at_top']} | {p['best_test']:.3f} | {p['by_best_score']:.3f} | "
        f"{p['by_model']:.3f} | {100 * (p['by_model'] - p['by_best_score']):+.1f} |"
        for p in result["picks"]
    )
    same = result["searches"] - result["model_better"] - result["model_worse"]
    return "\n".join(
        [
            START,
            "## Which trial a search hands on: its best validation score, or a model's best posterior mean "
            "(`python benchmarks/incumbent_choice.py`)",
            "",
            f"{result['searches']} searches in `{storage}` (made by `benchmarks/search_quality.py`), deep features + "
            "SVM and learnt BoVW, whose trials are chosen on the 282-image validation split. Test accuracies are "
            "the trials' own (trained on train alone). Baseline: the trial with the best validation score.",
            "",
            f"Mean regret (points below the best test accuracy among a search's trials): best score "
            f"{100 * regret['best score']:.2f}, model {100 * regret['model']:.2f}. The model's pick tests higher in "
            f"{result['model_better']} searches, lower in {result['model_worse']}, the same in {same}.",
            "",
            "| search | trials | tied at the top | best test | test of the best score's pick | of the model's pick | model - best score, points |",
            "|---|---|---|---|---|---|---|",
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

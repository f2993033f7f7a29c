"""Which score picks the trial that tests best: cross-validation on train + validation, or the
validation split alone (the baseline)?

Every dense-SIFT BoVW search trial reports both scores (`val_acc`, 5-fold cross-validated on
train + validation, and `holdout_val_acc`, on the validation split), and its `test_acc`, all from
models trained on train alone. This reads the trials of the searches that
`benchmarks/search_quality.py` kept in its --storage and measures, over the same trials:

- the rank correlation (Spearman) and the linear correlation of each score with test accuracy;
- per search, the test accuracy of the trial each score picks, and its shortfall from the best
  test accuracy among that search's trials (the regret).

    .venv/bin/python benchmarks/search_quality.py --approaches bovw_sift   # makes the searches
    .venv/bin/python benchmarks/selection_score.py [--storage DIR] [--out BENCHMARKS.md]

The figures go to benchmarks/selection_score.json and into BENCHMARKS.md between the markers.
"""

from __future__ import annotations

import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
from scipy.stats import spearmanr  # noqa: E402

from benchmarks.sections import publish, search_folders, search_reader_parser  # noqa: E402
from scenetune.experiment import load_trials  # noqa: E402

START, END = "<!-- selection_score:start -->", "<!-- selection_score:end -->"
SEARCHES = "s*-bovw_sift-*"  # search_quality.py's run folders of dense-SIFT BoVW


@dataclass(frozen=True)
class ScoredTrial:
    search: str
    cross_validated: float
    holdout: float
    test: float


@dataclass(frozen=True)
class Pick:
    search: str
    trials: int
    best_test: float
    by_cross_validation: float
    by_holdout: float


def scored_trials(storage: Path) -> list[ScoredTrial]:
    """The trials that were scored both ways and tested (too_slow and unconverged trials are not)."""
    trials = []
    for search in search_folders(storage, SEARCHES):
        for trial in load_trials(search):
            report = trial.last
            if (
                report.get("cv_folds")
                and not report.get("too_slow")
                and math.isfinite(report.get("test_acc", math.nan))
            ):
                trials.append(
                    ScoredTrial(search.name, report["val_acc"], report["holdout_val_acc"], report["test_acc"])
                )
    return trials


def picks(trials: list[ScoredTrial]) -> list[Pick]:
    """Per search with at least two scored trials: what each score picks (ties: the earlier trial)."""
    result = []
    for search in sorted({t.search for t in trials}):
        own = [t for t in trials if t.search == search]
        if len(own) < 2:
            continue
        by_cv = max(own, key=lambda t: t.cross_validated)
        by_holdout = max(own, key=lambda t: t.holdout)
        result.append(Pick(search, len(own), max(t.test for t in own), by_cv.test, by_holdout.test))
    return result


def figures(trials: list[ScoredTrial]) -> dict:
    test = np.array([t.test for t in trials])
    scores = {
        "cross-validation": np.array([t.cross_validated for t in trials]),
        "validation split": np.array([t.holdout for t in trials]),
    }
    chosen = picks(trials)
    regret = {
        "cross-validation": float(np.mean([p.best_test - p.by_cross_validation for p in chosen])),
        "validation split": float(np.mean([p.best_test - p.by_holdout for p in chosen])),
    }
    return {
        "trials": len(trials),
        "searches": len(chosen),
        "spearman": {name: float(spearmanr(score, test)[0]) for name, score in scores.items()},
        "pearson": {name: float(np.corrcoef(score, test)[0, 1]) for name, score in scores.items()},
        "mean_regret": regret,
        "picks": [asdict(p) for p in chosen],
    }


def section(result: dict, storage: Path) -> str:
    spearman, pearson, regret = result["spearman"], result["pearson"], result["mean_regret"]
    cv, holdout = "cross-validation", "validation split"
    rows = "\n".join(
        f"| {p['search']} | {p['trials']} | {p['best_test']:.3f} | {p['by_cross_validation']:.3f} | {p['by_holdout']:.3f} |"
        for p in result["picks"]
    )
    regret_ratio = regret[cv] / regret[holdout] if regret[holdout] else float("nan")
    return "\n".join(
        [
            START,
            "## Selection score of dense-SIFT BoVW: cross-validation against the validation split "
            "(`python benchmarks/selection_score.py`)",
            "",
            f"{result['trials']} search trials of {result['searches']} searches in `{storage}` (made by "
            "`benchmarks/search_quality.py --approaches bovw_sift`), each scored both ways and tested, all "
            "on models trained on train alone. Baseline: the validation split's score (282 images on MIT_split).",
            "",
            "| score | Spearman with test accuracy | Pearson | mean regret of its picks, points |",
            "|---|---|---|---|",
            f"| validation split (baseline) | {spearman[holdout]:.3f} | {pearson[holdout]:.3f} | {100 * regret[holdout]:.2f} |",
            f"| 5-fold cross-validation on train + validation | {spearman[cv]:.3f} | {pearson[cv]:.3f} | "
            f"{100 * regret[cv]:.2f} ({regret_ratio:.2f}x the baseline's) |",
            "",
            "| search | scored trials | best test | test of the pick by cross-validation | by the validation split |",
            "|---|---|---|---|---|",
            rows,
            END,
        ]
    )


def main() -> int:
    parser = search_reader_parser(__doc__.split("\n\n")[0], "selection_score")
    args = parser.parse_args()
    trials = scored_trials(args.storage)
    if len(trials) < 3:
        parser.error(
            f"{args.storage} holds {len(trials)} dense-SIFT trials scored both ways; run search_quality.py first"
        )
    result = figures(trials)
    publish(args, result, START, END, section(result, args.storage))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Measurement 7: does scenetune's search end at least where the alternatives end, on the same budget?

For each of the study's five approaches and each seed, four ways of choosing a configuration, each
followed by the same refit (the chosen configuration trained again with --refit seeds; test accuracy
as mean ± std over them):

- (a) defaults:   the task's defaults, trained the same way (`--samples 1`: the first prior point);
- (b) random:     random search, no priors, every trial to its end (`--sampler random --no-prior
                  --early-stopping none`), on the budget;
- (c) scenetune:  `scenetune sweep` as it comes: priors first, then TPE (`--sampler gp`: the GP
                  sampler), with ASHA, on the budget;
- (d) no prior:   (c) without the priors (`--no-prior`), on the budget.

Every run starts from an empty feature cache (its own --cache-dir, removed after it), as a user's
first search does; with one shared cache, the features, descriptors and codebooks computed by one
method's run sped up the methods run after it. The feature approaches take their features from the
seed's (a) network (the defaults MLP for deep features + SVM, the defaults patch MLP for learnt
BoVW), so that the four methods of one approach see the same features.

    .venv/bin/python benchmarks/search_quality.py [--data DIR] [--budget 60] [--epochs 5] [--refit 3]
        [--seeds 0 1 2] [--approaches mlp ...] [--sampler tpe|gp] [--storage DIR] [--out BENCHMARKS.md]

With --approaches and --seeds, only those (approach, seed) pairs run; the rows of the others are
carried from the earlier run in benchmarks/search_quality.json (when made with the same budget,
epochs and refits), and the section says which runs each approach's rows come from.

Each finished run is kept in --storage and not run again, so an interrupted benchmark continues
where it stopped. The figures go to benchmarks/search_quality.json and into BENCHMARKS.md between
the measurement's markers. A run with another budget or sampler keeps its own runs, JSON and
section (`--budget 240`: search_quality-240s.json, the section marked search_quality-240s), so it
sits beside the 60 s one.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from analysis.uncertainty import RefitSummary, paired_comparison, refit_summary  # noqa: E402
from benchmarks.sections import current_commit  # noqa: E402
from benchmarks.sections import write_section as write_marked_section  # noqa: E402
from scenetune.experiment import best_trial, describe_config, load_trials  # noqa: E402
from scenetune.registry import get_task  # noqa: E402

MIT_SPLIT = REPO.parent / "shared" / "datasets" / "MIT_split"
DEFAULT_BUDGET = 60.0
UNLIMITED_SAMPLES = "500"  # the budget, not this, ends each search
NO_RESULT_FILE = "search_quality-no-result.txt"  # in a run whose budget ended before any trial finished


@dataclass(frozen=True)
class Approach:
    label: str
    task: str
    pins: tuple[str, ...] = ()
    source: str | None = None  # the approach whose (a) experiment gives the features


APPROACHES = {
    "mlp": Approach("end-to-end MLP", "mlp"),
    "feature_svm": Approach("deep features + SVM", "feature_svm", source="mlp"),
    "patch_mlp": Approach("patch MLP", "patch_mlp"),
    "bovw_learnt": Approach("BoVW, learnt descriptors", "bovw", ("descriptor=learnt",), source="patch_mlp"),
    "bovw_sift": Approach("BoVW, dense SIFT", "bovw", ("descriptor=sift",)),
}


@dataclass
class Methods:
    budget: float
    sampler: str = "tpe"  # the sampler of (c) and (d)
    arguments: dict[str, list[str]] = field(init=False)

    def __post_init__(self) -> None:
        budget = ["--samples", UNLIMITED_SAMPLES, "--time-budget", f"{self.budget:g}"]
        self.arguments = {
            "defaults": ["--samples", "1"],
            "random": [*budget, "--sampler", "random", "--no-prior", "--early-stopping", "none"],
            "scenetune": [*budget, "--sampler", self.sampler],
            "no_prior": [*budget, "--sampler", self.sampler, "--no-prior"],
        }


SEARCHED = ("scenetune", "no_prior")  # the methods --sampler applies to


def run_name(approach: str, method: str, seed: int, budget: float, sampler: str) -> str:
    """The run's folder in --storage: every method depends on the budget (it sets the trial limit),
    the searched ones on the sampler too."""
    return f"s{seed}-{approach}-{method}" + run_tag(budget, sampler if method in SEARCHED else "tpe")


def sweep_arguments(args: argparse.Namespace, approach: Approach, seed: int) -> list[str]:
    """What every method of an approach shares: data or source, pins, epochs, seed, refit, trial limit."""
    arguments = [approach.task, "--seed", str(seed), "--refit", str(args.refit)]
    if approach.source:
        arguments += [
            "--from",
            str(args.storage / run_name(approach.source, "defaults", seed, args.budget, args.sampler)),
        ]
    else:
        arguments += ["--data", str(args.data)]
    if get_task(approach.task).model_kind is not None:
        arguments += ["--epochs", str(args.epochs)]
    for pin in approach.pins:
        arguments += ["--set", pin]
    # One trial may take half the budget, so that the defaults fit in every method's searches.
    return [*arguments, "--max-trial-seconds", f"{args.budget / 2:g}"]


def measure(args: argparse.Namespace, approach_key: str, method: str, seed: int) -> dict[str, Any]:
    """Run one (approach, method, seed) unless it already finished; return its figures."""
    approach = APPROACHES[approach_key]
    name = run_name(approach_key, method, seed, args.budget, args.sampler)
    experiment = args.storage / name
    summary = refit_summary(experiment) if experiment.is_dir() else None
    seconds = None
    if summary is None and not (experiment / NO_RESULT_FILE).is_file():
        seconds, summary = run_search(args, approach, method, seed, name)
    now = {"wall_seconds": seconds, "measured": f"{time.strftime('%Y-%m-%d')}, commit {current_commit()}"}
    if seconds is not None:  # a source network run here is reused by its own approach's rows later
        args.earlier.insert(0, {"approach": approach_key, "method": method, "seed": seed, **now})
    row = {
        "approach": approach_key,
        "method": method,
        "seed": seed,
        "trials": len(load_trials(experiment)),
        **(now if seconds is not None else when_run(args, approach_key, method, seed)),
    }
    if summary is None:
        return {**row, "refit_mean": None, "best_config": None}
    best = best_trial(experiment)
    return {
        **row,
        "refit_mean": summary.mean,
        "refit_std": summary.std,
        "refit_low": summary.low,
        "refit_high": summary.high,
        "refit_seeds": len(summary.test_accs),
        "refit_correct": [round(float(share), 4) for share in summary.correct],  # per test image
        "best_val_acc": float(best.best_report()["val_acc"]),
        "best_config": describe_config(best.config, get_task(approach.task).space.defaults),
    }


def run_search(
    args: argparse.Namespace, approach: Approach, method: str, seed: int, name: str
) -> tuple[float, RefitSummary | None]:
    """Run one search and its refits from scratch in --storage, with an empty cache of its own; the
    seconds it took and its refits. A search whose budget ended before any trial finished is marked
    as such."""
    experiment, cache = args.storage / name, args.storage / f"{name}.cache"
    shutil.rmtree(experiment, ignore_errors=True)  # an unfinished run starts again
    shutil.rmtree(cache, ignore_errors=True)
    command = [
        sys.executable,
        "-m",
        "scenetune",
        "sweep",
        *sweep_arguments(args, approach, seed),
        *Methods(args.budget, args.sampler).arguments[method],
        "--storage",
        str(args.storage),
        "--name",
        name,
        "--cache-dir",
        str(cache),
    ]
    started = time.perf_counter()
    done = subprocess.run(command, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - started
    shutil.rmtree(cache, ignore_errors=True)
    summary = refit_summary(experiment)
    if summary is None:
        failed = not experiment.is_dir() or not load_trials(experiment) or best_trial(experiment) is not None
        if failed:
            raise SystemExit(f"search_quality: {name} failed (exit code {done.returncode}); see {experiment}")
        (experiment / NO_RESULT_FILE).write_text(f"no trial finished within {args.budget:g} s\n")
    return seconds, summary


def run_tag(budget: float, sampler: str) -> str:
    """What tells runs of other budgets or samplers apart: each gets its own JSON and section."""
    return (f"-{budget:g}s" if budget != DEFAULT_BUDGET else "") + (f"-{sampler}" if sampler != "tpe" else "")


def section_markers(args: argparse.Namespace) -> tuple[str, str]:
    name = "search_quality" + run_tag(args.budget, args.sampler)
    return f"<!-- {name}:start -->", f"<!-- {name}:end -->"


def run_settings(args: argparse.Namespace) -> dict[str, Any]:
    """What makes two runs' rows comparable; kept in --json beside the rows."""
    return {"budget": args.budget, "epochs": args.epochs, "refit": args.refit, "sampler": args.sampler}


def write_json(path: Path, settings: dict[str, Any], results: list[dict[str, Any]]) -> None:
    """The settings, then one result per line: each row holds a list of 807 per-image shares, which
    one value per line made a file of 30,000 lines."""
    rows = ",\n".join(json.dumps(row) for row in results)
    path.write_text(json.dumps(settings)[:-1] + ', "results": [\n' + rows + "\n]}\n")


def earlier_rows(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The rows of the earlier run in --json when it was made with the same budget, epochs and refits
    (so that one table holds comparable rows)."""
    if not args.json.is_file():
        return []
    earlier = json.loads(args.json.read_text())
    if any(earlier.get(key, value) != value for key, value in run_settings(args).items()):
        return []
    return earlier["results"]


def carried_rows(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The rows of the (approach, seed) pairs this run leaves out, from the earlier run in --json."""
    return [
        row
        for row in earlier_rows(args)
        if row["approach"] not in args.approaches or row["seed"] not in args.seeds
    ]


def not_yet_rerun(args: argparse.Namespace, results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The earlier rows of the pairs this run has yet to reach, so that an interrupted run keeps them."""
    done = {(row["approach"], row["seed"]) for row in results}
    return [
        row
        for row in earlier_rows(args)
        if row["approach"] in args.approaches
        and row["seed"] in args.seeds
        and (row["approach"], row["seed"]) not in done
    ]


def when_run(args: argparse.Namespace, approach: str, method: str, seed: int) -> dict[str, Any]:
    """When a run kept in --storage was made and how long it took (a reused run is not measured
    again): args.earlier holds the runs this invocation made, then the rows of the earlier --json,
    read before this run rewrites it."""
    for row in args.earlier:
        if (row["approach"], row["method"], row["seed"]) == (approach, method, seed):
            return {
                "wall_seconds": row.get("wall_seconds"),
                "measured": row.get("measured", "an earlier run"),
            }
    return {"wall_seconds": None, "measured": "an earlier run"}


def when_measured(results: list[dict[str, Any]]) -> str:
    """Which runs each approach's rows come from (with their seeds where there are several)."""
    seeds_by_run: dict[str, dict[str, set[int]]] = {}
    for row in results:
        runs = seeds_by_run.setdefault(APPROACHES[row["approach"]].label, {})
        runs.setdefault(row.get("measured", "an earlier run"), set()).add(row["seed"])
    return "; ".join(f"{label}: {runs_text(runs)}" for label, runs in seeds_by_run.items())


def runs_text(seeds_by_run: dict[str, set[int]]) -> str:
    """One run as it is; several, each with the seeds it measured."""
    if len(seeds_by_run) == 1:
        return next(iter(seeds_by_run))
    return ", ".join(
        f"{run} (seed{'s' * (len(seeds) > 1)} {', '.join(map(str, sorted(seeds)))})"
        for run, seeds in seeds_by_run.items()
    )


def seeds_of(results: list[dict[str, Any]]) -> list[int]:
    """The seeds the table's rows cover, carried ones included."""
    return sorted({row["seed"] for row in results})


def cell(row: dict[str, Any]) -> str:
    if row["refit_mean"] is None:
        return "no trial finished"
    return f"{row['refit_mean']:.3f} ± {row['refit_std']:.3f}"


def at_least(ours: dict[str, Any], theirs: dict[str, Any]) -> bool:
    """Whether ours ended at or above theirs; a search with no result is below any with one."""
    if ours["refit_mean"] is None:
        return theirs["refit_mean"] is None
    return theirs["refit_mean"] is None or ours["refit_mean"] >= theirs["refit_mean"]


def versus(ours: dict[str, Any], theirs: dict[str, Any]) -> str:
    """The difference in points, paired over the test images: marked ~ where the data cannot tell."""
    if ours["refit_mean"] is None or theirs["refit_mean"] is None:
        return "n/a"
    comparison = paired_comparison(np.array(ours["refit_correct"]), np.array(theirs["refit_correct"]))
    mark = "" if comparison.distinguishable else " ~"
    return f"{comparison.difference * 100:+.1f}{mark} (p={comparison.p_value:.2g})"


def told_worse(ours: dict[str, Any], theirs: dict[str, Any]) -> bool:
    """Whether ours is below theirs by a difference the data can tell."""
    if ours["refit_mean"] is None or theirs["refit_mean"] is None:
        return theirs["refit_mean"] is not None  # no result is below any
    comparison = paired_comparison(np.array(ours["refit_correct"]), np.array(theirs["refit_correct"]))
    return comparison.distinguishable and comparison.difference < 0


def table(results: list[dict[str, Any]], seeds: list[int]) -> tuple[str, int, int, int]:
    """The markdown table; how many (approach, seed) pairs meet the target, of how many; and in how
    many (c) is below (a) or (b) by a difference the data can tell."""
    by_key = {(r["approach"], r["method"], r["seed"]): r for r in results}
    lines = [
        "| approach | seed | (a) defaults | (b) random | (c) scenetune | (d) --no-prior | (c) - (a), points | (c) - (b), points | (c) >= (a), (b) | trials (b/c/d) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    met = total = worse = 0
    for approach_key, approach in APPROACHES.items():
        for seed in seeds:
            rows = [
                by_key.get((approach_key, m, seed)) for m in ("defaults", "random", "scenetune", "no_prior")
            ]
            if any(r is None for r in rows):
                continue
            a, b, c, d = rows
            ok = at_least(c, a) and at_least(c, b)
            met, total = met + ok, total + 1
            worse += told_worse(c, a) or told_worse(c, b)
            lines.append(
                f"| {approach.label} | {seed} | {cell(a)} | {cell(b)} | {cell(c)} | {cell(d)} | "
                f"{versus(c, a)} | {versus(c, b)} | "
                f"{'yes' if ok else 'no'} | {b['trials']}/{c['trials']}/{d['trials']} |"
            )
    return "\n".join(lines), met, total, worse


def write_section(out: Path, args: argparse.Namespace, results: list[dict[str, Any]]) -> None:
    seeds = seeds_of(results)
    text, met, total, worse = table(results, seeds)
    command = (
        f"python benchmarks/search_quality.py --budget {args.budget:g} --epochs {args.epochs} "
        f"--refit {args.refit} --seeds {' '.join(map(str, seeds))}"
        + (f" --sampler {args.sampler}" if args.sampler != "tpe" else "")
    )
    start, end = section_markers(args)
    section = "\n".join(
        [
            start,
            f"## Search quality against the defaults and random search (measurement 7, `{command}`)",
            "",
            f"On `{Path(args.data).name}`, {os.cpu_count()} CPU cores, {platform.python_version()}, {time.strftime('%Y-%m-%d')}: "
            f"each search had a budget of {args.budget:g} s of wall clock on those cores (one trial at most "
            f"{args.budget / 2:g} s; networks {args.epochs} epochs per trial), then its chosen configuration was "
            f"refit with {args.refit} seeds (train + validation, the best epoch count). Cells: refit test accuracy, "
            "mean ± std over the refit seeds, on the test folder. Differences are paired over the test images "
            "(bootstrap interval and paired permutation test on the share of refit models right on each image); ~ marks a "
            "difference the data cannot tell from zero. The baselines (a) and (b) of an approach were measured "
            f"in the same run as its (c) and (d). Measured: {when_measured(results)}.",
            "",
            text,
            "",
            f"Target (c) >= (a) and (c) >= (b) on the refit means: met for **{met} of {total}** (approach, seed) "
            f"pairs; (c) is below (a) or (b) by a difference the data can tell in {worse} of {total}.",
            end,
        ]
    )
    write_marked_section(out, start, end, section)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(MIT_SPLIT), help="an image folder, or digits")
    parser.add_argument(
        "--budget", type=float, default=DEFAULT_BUDGET, help="seconds of wall clock per search"
    )
    parser.add_argument("--epochs", type=int, default=5, help="epochs per network trial")
    parser.add_argument("--refit", type=int, default=3)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--sampler", choices=["tpe", "gp"], default="tpe", help="the sampler of (c) and (d)")
    parser.add_argument("--approaches", nargs="+", default=list(APPROACHES), choices=list(APPROACHES))
    parser.add_argument("--storage", type=Path, default=Path("/tmp/scenetune-search-quality"))
    parser.add_argument(
        "--json",
        type=Path,
        help="default: benchmarks/search_quality.json, tagged with a budget other than 60 s",
    )
    parser.add_argument("--out", type=Path, default=REPO / "BENCHMARKS.md")
    parser.add_argument(
        "--report-only", action="store_true", help="write the section from --json as it is (a run cut short)"
    )
    args = parser.parse_args()
    if args.json is None:
        args.json = REPO / "benchmarks" / f"search_quality{run_tag(args.budget, args.sampler)}.json"
    if args.report_only:
        results = json.loads(args.json.read_text())["results"]
        write_section(args.out, args, results)
        print(table(results, seeds_of(results))[0])
        return 0
    if args.data != "digits" and not Path(args.data).is_dir():
        parser.error(f"--data {args.data} is not a folder")
    args.storage = args.storage.resolve()
    args.storage.mkdir(parents=True, exist_ok=True)
    args.earlier = earlier_rows(args)
    carried = carried_rows(args)
    results: list[dict[str, Any]] = []
    # Approach by approach, every seed, so that an interrupted run has whole approaches to show.
    for approach_key in args.approaches:
        for seed in args.seeds:
            source = APPROACHES[approach_key].source
            if source is not None:  # the seed's defaults network gives the features
                measure(args, source, "defaults", seed)
            for method in ("defaults", "random", "scenetune", "no_prior"):
                row = measure(args, approach_key, method, seed)
                results.append(row)
                print(json.dumps(row), flush=True)
                write_json(args.json, run_settings(args), carried + results + not_yet_rerun(args, results))
    write_section(args.out, args, carried + results)
    print(table(carried + results, seeds_of(carried + results))[0])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

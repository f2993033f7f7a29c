"""What one poll of the dashboard costs. Home page: the answer computed from the files every time (the
baseline) against the dashboard's PayloadCache, when nothing changed and when one trial reported.
Experiment page (the experiment with the most scored trials): the answer with hyperparameter importance
computed afresh, as every poll did once a trial had reported (the baseline), against ImportanceCache,
which shows the last importance and recomputes it in the background at most every 30 s; that page
rebuilt from the files on every poll, and cached like the home page (nothing changed, one trial
reported).

    .venv/bin/python benchmarks/dashboard_poll.py --root RESULTS [--polls 10]

RESULTS is any results folder (experiments, studies, replications). To stand for a trial reporting an
epoch, the measurement sets one result.json's modification time to now, and puts it back at the end;
no file's content changes. Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from analysis.dashboard import ImportanceCache  # noqa: E402
from analysis.payloads import PayloadCache, discover, experiment_payload, home_payload  # noqa: E402
from analysis.results import load_experiment  # noqa: E402


def seconds_per_poll(poll, polls: int) -> float:
    timings = []
    for _ in range(polls):
        started = time.perf_counter()
        poll()
        timings.append(time.perf_counter() - started)
    return statistics.median(timings)


def touch(path: Path) -> None:
    """A new modification time, as a trial writing its result.json gives it."""
    os.utime(path, ns=(time.time_ns(), time.time_ns()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True, help="a results folder (no file's content changes)")
    parser.add_argument("--polls", type=int, default=10)
    args = parser.parse_args()
    if not Path(args.root).is_dir():
        print(f"dashboard_poll: results folder {args.root} does not exist", file=sys.stderr)
        return 2
    root = Path(args.root)
    experiments, studies, replications = discover(root)
    uncached = seconds_per_poll(lambda: home_payload(root), args.polls)
    cache = PayloadCache()
    home_payload(root, cache)
    unchanged = seconds_per_poll(lambda: home_payload(root, cache), args.polls)
    result = next(path for experiment in experiments for path in experiment.glob("*/result.json"))
    before = result.stat()
    try:
        one_changed = seconds_per_poll(lambda: (touch(result), home_payload(root, cache)), args.polls)
    finally:
        os.utime(result, ns=(before.st_atime_ns, before.st_mtime_ns))
    largest = max(experiments, key=lambda path: len(load_experiment(path).scored_trials()))
    with_importance = seconds_per_poll(lambda: experiment_payload(root, largest), args.polls)
    importance = ImportanceCache()
    importance.payload(root, largest)
    first = importance.computing.get(str(largest))
    if first is not None:  # let the first computation, in the background, end before polls are timed
        first.result()
    page_poll = seconds_per_poll(lambda: importance.payload(root, largest), args.polls)
    importance.payload(root, largest, cache)
    page_cached = seconds_per_poll(lambda: importance.payload(root, largest, cache), args.polls)
    page_result = next(largest.glob("*/result.json"))
    before = page_result.stat()
    try:
        page_one_changed = seconds_per_poll(
            lambda: (touch(page_result), importance.payload(root, largest, cache)), args.polls
        )
    finally:
        os.utime(page_result, ns=(before.st_atime_ns, before.st_mtime_ns))
    print(
        json.dumps(
            {
                "root": args.root,
                "experiments": len(experiments),
                "studies": len(studies),
                "replications": len(replications),
                "seconds_per_poll": {
                    "uncached": round(uncached, 4),
                    "cached_nothing_changed": round(unchanged, 4),
                    "cached_one_trial_reported": round(one_changed, 4),
                },
                "speedup_nothing_changed": round(uncached / unchanged, 1),
                "speedup_one_trial_reported": round(uncached / one_changed, 1),
                "experiment_page": {
                    "experiment": str(largest.relative_to(root)),
                    "scored_trials": len(load_experiment(largest).scored_trials()),
                    "seconds_per_poll_importance_afresh": round(with_importance, 4),
                    "seconds_per_poll_importance_cache": round(page_poll, 4),
                    "speedup": round(with_importance / page_poll, 1),
                    "seconds_per_poll_page_cache_nothing_changed": round(page_cached, 4),
                    "seconds_per_poll_page_cache_one_trial_reported": round(page_one_changed, 4),
                    "speedup_page_cache_nothing_changed": round(with_importance / page_cached, 1),
                },
            },
            indent=1,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

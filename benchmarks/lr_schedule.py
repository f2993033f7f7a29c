"""How much does a refit's test accuracy depend on the epoch it stops at, at a constant learning rate
(the baseline) and annealed by the cosine schedule?

For each network task of a finished study, the configuration the study chose is trained again, as
its refits are (train + validation, the study's refit epoch count, seeds 1000, 1001, ...), once at a
constant learning rate and once with `lr_schedule=cosine`; both arms in one run. Every refit reports
its test accuracy after each epoch, so the run measures, per arm (a trial's torch seed derives from its
seed and whole configuration, so the arms' seeds are independent draws, not shared ones):

- the final test accuracy over seeds (mean ± std), and the spread between the best and worst seed,
  with a paired bootstrap interval of the difference in spread over the same test images;
- the epoch-to-epoch swing: the mean absolute change of test accuracy between consecutive epochs
  over the last quarter of training (what a refit's number would change by had it stopped an epoch
  earlier or later);
- the paired difference of the two arms' mean accuracy (per image: the share of an arm's seeds right).

    .venv/bin/python benchmarks/lr_schedule.py --study /work/runs/study/mit3600-f55adc3 \\
        [--tasks mlp patch_mlp cnn] [--seeds 3] [--storage DIR] [--out BENCHMARKS.md]

The figures go to benchmarks/lr_schedule.json and into BENCHMARKS.md between the markers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from analysis.uncertainty import (  # noqa: E402
    accuracy_interval,
    paired_comparison,
    refit_predictions,
    spread_difference,
)
from benchmarks.sections import current_commit, write_section  # noqa: E402
from scenetune.experiment import (  # noqa: E402
    REFIT_DIR,
    TrialRecord,
    best_trial,
    objective_of,
    read_experiment_record,
)
from scenetune.refit import configs_tuner, refit_configs, refit_epochs  # noqa: E402

START, END = "<!-- lr_schedule:start -->", "<!-- lr_schedule:end -->"
SCHEDULES = ("constant", "cosine")  # the baseline first
LABELS = {"mlp": "end-to-end MLP", "patch_mlp": "patch MLP", "cnn": "small CNN"}
SWING_SHARE = 0.25  # the last quarter of the epochs


def arm_configs(study_task: Path, seeds: int) -> tuple[list[dict[str, Any]], int]:
    """The study's chosen configuration as its refits train it, once per seed and schedule."""
    best = best_trial(study_task)
    if best is None:
        raise SystemExit(f"{study_task} has no finished trial")
    record = read_experiment_record(study_task)
    epochs = refit_epochs(best, objective_of(record), record["data"]["sizes"]["val"])
    configs = refit_configs(best, seeds, int(record["seed"]), on_validation=True, epochs=epochs)
    return [{**config, "lr_schedule": schedule} for schedule in SCHEDULES for config in configs], epochs


def train(
    study_task: Path, storage: Path, task: str, configs: list[dict[str, Any]]
) -> list[tuple[TrialRecord, np.ndarray]]:
    """Train the configurations as refit trials (kept in --storage: a finished task is not rerun);
    each finished one with its correctness on every test image."""
    from scenetune.request import SweepRequest
    from scenetune.sweep import _trainable, prepare, start_ray

    experiment = storage / task
    runs = refit_predictions(experiment) if (experiment / REFIT_DIR).is_dir() else []
    if len(runs) < len(configs):
        shutil.rmtree(experiment, ignore_errors=True)
        record = read_experiment_record(study_task)
        request = SweepRequest(
            task=task,
            data=record["request"]["data"],
            pinned={"image_size": configs[0]["image_size"]},  # decode the one size the arms train on
            storage=str(storage),
            name=task,
        )
        plan = prepare(request)
        start_ray()
        configs_tuner(plan, _trainable(plan), configs, REFIT_DIR).fit()
        runs = refit_predictions(experiment)
    return [(trial, predicted == labels) for trial, predicted, labels in runs]


def test_curve(trial: TrialRecord) -> list[float]:
    return [float(report["test_acc"]) for report in trial.history]


def swing(curve: list[float]) -> float:
    tail = curve[-max(2, round(len(curve) * SWING_SHARE)) :]
    return float(np.mean(np.abs(np.diff(tail))))


def measure_task(study: Path, storage: Path, task: str, seeds: int) -> dict[str, Any]:
    configs, epochs = arm_configs(study / task, seeds)
    trained = train(study / task, storage, task, configs)
    arms: dict[str, Any] = {}
    correct: dict[str, list[np.ndarray]] = {}
    for schedule in SCHEDULES:
        runs = sorted(
            ((t, c) for t, c in trained if t.config["lr_schedule"] == schedule),
            key=lambda run: run[0].config["seed"],
        )
        curves = [test_curve(t) for t, _ in runs]
        correct[schedule] = [c for _, c in runs]
        finals = [curve[-1] for curve in curves]
        low, high = accuracy_interval(np.mean([c.astype(float) for c in correct[schedule]], axis=0))
        arms[schedule] = {
            "final": finals,
            "mean": float(np.mean(finals)),
            "std": float(np.std(finals, ddof=1)),
            "low": low,
            "high": high,
            "swing": float(np.mean([swing(c) for c in curves])),
            "curves": curves,
        }
    shares = {s: np.mean([c.astype(float) for c in correct[s]], axis=0) for s in SCHEDULES}
    difference = paired_comparison(shares["cosine"], shares["constant"])
    spread = spread_difference(correct["cosine"], correct["constant"])
    config = {k: v for k, v in configs[0].items() if k not in ("seed", "lr_schedule", "refit")}
    return {
        "task": task,
        "epochs": epochs,
        "seeds": seeds,
        "config": config,
        "arms": arms,
        "difference": {
            "points": 100 * difference.difference,
            "low": 100 * difference.low,
            "high": 100 * difference.high,
            "p": difference.p_value,
            "told_apart": difference.distinguishable,
        },
        "spread_difference": {
            "points": 100 * spread.difference,
            "low": 100 * spread.low,
            "high": 100 * spread.high,
        },
    }


def arm_cell(arm: dict[str, Any]) -> str:
    finals = " / ".join(f"{a:.3f}" for a in arm["final"])
    return f"{arm['mean']:.3f} ± {arm['std']:.3f} [{arm['low']:.3f}, {arm['high']:.3f}] ({finals})"


def section(results: list[dict[str, Any]], settings: dict[str, Any]) -> str:
    lines = [
        START,
        f"## A refit's learning-rate schedule: constant (baseline) against cosine (`python benchmarks/lr_schedule.py --study {settings['study']}`)",
        "",
        f"On `MIT_split`, {settings['machine']}, commit {settings['commit']}: each network task's configuration "
        f"chosen by the study `{Path(settings['study']).name}`, trained as its refits are (train + validation, the "
        "study's refit epoch count), with seeds 1000-1002 at a constant learning rate and with `lr_schedule=cosine`, "
        "in one run (a trial's torch seed derives from its seed and its whole configuration, so the two arms start "
        "from different initial weights and batch orders: three draws each). Test accuracy after the last epoch: mean ± std over the seeds [95% bootstrap interval over the "
        "807 test images] (each seed). Swing: the mean absolute change in test accuracy between consecutive "
        "epochs over the last quarter of training, in points. Differences are cosine minus constant, paired over "
        "the test images; ~ marks one the data cannot tell from zero.",
        "",
        "| approach | epochs | constant (baseline) | cosine | cosine - constant, points | seed spread, cosine - constant, points | swing, constant -> cosine |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        d, s = r["difference"], r["spread_difference"]
        told = "" if d["told_apart"] else " ~"
        spread_told = "" if not s["low"] <= 0 <= s["high"] else " ~"
        constant, cosine = r["arms"]["constant"], r["arms"]["cosine"]
        ratio = cosine["swing"] / constant["swing"] if constant["swing"] else float("nan")
        lines.append(
            f"| {LABELS.get(r['task'], r['task'])} | {r['epochs']} | {arm_cell(constant)} | {arm_cell(cosine)} | "
            f"{d['points']:+.1f}{told} [{d['low']:+.1f}, {d['high']:+.1f}] (p={d['p']:.2g}) | "
            f"{s['points']:+.1f}{spread_told} [{s['low']:+.1f}, {s['high']:+.1f}] | "
            f"{100 * constant['swing']:.1f} -> {100 * cosine['swing']:.1f} ({ratio:.2f}x) |"
        )
    lines.append(END)
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", type=Path, required=True, help="a finished `scenetune study` folder")
    parser.add_argument("--tasks", nargs="+", default=["mlp", "patch_mlp", "cnn"])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--storage", type=Path, default=Path("/tmp/scenetune-lr-schedule"))
    parser.add_argument("--out", type=Path, default=REPO / "BENCHMARKS.md")
    args = parser.parse_args()
    results = [measure_task(args.study, args.storage, task, args.seeds) for task in args.tasks]
    settings = {
        "study": str(args.study),
        "commit": current_commit(),
        "machine": f"{os.cpu_count()} CPU cores ({platform.machine()}), Python {platform.python_version()}",
    }
    (REPO / "benchmarks" / "lr_schedule.json").write_text(
        json.dumps({"settings": settings, "results": results}, indent=1) + "\n"
    )
    write_section(args.out, START, END, section(results, settings))
    for r in results:
        print(
            r["task"],
            {
                s: (round(a["mean"], 4), round(a["std"], 4), round(a["swing"], 4))
                for s, a in r["arms"].items()
            },
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

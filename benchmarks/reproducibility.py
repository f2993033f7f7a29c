"""Does a seeded trial repeat exactly, and how far does it move where the arithmetic changes?

Each run is `scenetune sweep TASK --samples 1 --refit 3`: the task's defaults as the one search trial,
then three refits on train + validation, every one seeded. Runs of the same task differ only in
what computes them:

- baseline: this machine as it is (torch's CPU kernels at their widest instruction set);
- again: the baseline a second time, into a new folder (does a seed repeat a result exactly?);
- AVX2: torch, oneDNN and MKL held to AVX2, as on a CPU without AVX-512 (what moves when the same
  command runs on another machine?);
- 2 threads: `--cpus-per-trial 2`, so each trial's kernels split their work over two threads.

Against the baseline it counts the test images whose predicted class changed, for the search
trial's model and for each refit model, and the change in test accuracy; beside it, the spread of
the baseline's refit seeds, for scale.

    .venv/bin/python benchmarks/reproducibility.py [--data DIR] [--tasks mlp patch_mlp] [--out F]

The figures go to benchmarks/reproducibility.json and into BENCHMARKS.md between the markers.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from analysis.uncertainty import predictions_on_test, refit_predictions  # noqa: E402
from benchmarks.sections import current_commit, publish  # noqa: E402
from scenetune.environment import cpu_model, torch_cpu_capability  # noqa: E402
from scenetune.experiment import best_trial  # noqa: E402

MIT_SPLIT = REPO.parent / "shared" / "datasets" / "MIT_split"
START, END = "<!-- reproducibility:start -->", "<!-- reproducibility:end -->"
BASELINE = "baseline"
AVX2 = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}
# name: (environment variables, extra sweep arguments)
VARIANTS: dict[str, tuple[dict[str, str], list[str]]] = {
    BASELINE: ({}, []),
    "again": ({}, []),
    "AVX2": (AVX2, []),
    "2 threads": ({}, ["--cpus-per-trial", "2"]),
}


@dataclass(frozen=True)
class Run:
    task: str
    variant: str
    seconds: float
    search_predicted: list[int]
    search_test_acc: float
    refit_predicted: list[list[int]]
    refit_test_accs: list[float]


@dataclass(frozen=True)
class Change:
    task: str
    variant: str
    search_images_changed: int  # of the search trial's test predictions, against the baseline's
    search_test_change: float
    refit_images_changed: float  # mean over the refit seeds
    refit_mean_change: float
    baseline_refit_std: float


def sweep(args: argparse.Namespace, task: str, variant: str) -> Run:
    """One run from an empty folder (the decoded images are cached once per task, across variants)."""
    variables, extra = VARIANTS[variant]
    name = f"{task}-{variant.replace(' ', '-')}"
    experiment = args.storage / name
    shutil.rmtree(experiment, ignore_errors=True)
    command = [sys.executable, "-m", "scenetune", "sweep", task, "--data", str(args.data)]
    command += ["--samples", "1", "--refit", "3", "--epochs", str(args.epochs), "--seed", str(args.seed)]
    command += [
        "--storage",
        str(args.storage),
        "--name",
        name,
        "--cache-dir",
        str(args.storage / f"{task}.cache"),
    ]
    started = time.perf_counter()
    subprocess.run([*command, *extra], env={**os.environ, **variables}, stdout=subprocess.DEVNULL, check=True)
    seconds = time.perf_counter() - started
    best = best_trial(experiment)
    predicted, labels = predictions_on_test(best.checkpoint)
    refits = refit_predictions(experiment)
    return Run(
        task,
        variant,
        seconds,
        predicted.tolist(),
        float(np.mean(predicted == labels)),
        [refit_predicted.tolist() for _, refit_predicted, _ in refits],
        [float(trial.last["test_acc"]) for trial, _, _ in refits],
    )


def change(baseline: Run, run: Run) -> Change:
    refit_changed = [
        int(np.sum(np.asarray(a) != np.asarray(b)))
        for a, b in zip(baseline.refit_predicted, run.refit_predicted)
    ]
    return Change(
        run.task,
        run.variant,
        int(np.sum(np.asarray(baseline.search_predicted) != np.asarray(run.search_predicted))),
        run.search_test_acc - baseline.search_test_acc,
        float(np.mean(refit_changed)),
        float(np.mean(run.refit_test_accs) - np.mean(baseline.refit_test_accs)),
        float(np.std(baseline.refit_test_accs, ddof=1)),
    )


def section(args: argparse.Namespace, runs: list[Run], changes: list[Change]) -> str:
    images = len(runs[0].search_predicted)
    lines = [
        START,
        f"On `{Path(args.data).name}` ({images} test images), {os.cpu_count()} x {cpu_model()} "
        f"(torch's CPU kernels: {torch_cpu_capability()}), Python {platform.python_version()}, "
        f"{time.strftime('%Y-%m-%d')}, commit {current_commit()}: each task's defaults, {args.epochs} epochs, "
        f"seed {args.seed}, then 3 refits on train + validation. Baseline: the same command on this machine as it "
        "is. Images changed: test images whose predicted class differs from the baseline's (for the refits, "
        "the mean over the three seeds).",
        "",
        "| task | run | search trial: images changed | its test acc change | refits: images changed "
        "| refit mean change | baseline refit std | seconds |",
        "|---|---|---|---|---|---|---|---|",
    ]
    seconds = {(run.task, run.variant): run.seconds for run in runs}
    for c in changes:
        lines.append(
            f"| {c.task} | {c.variant} | {c.search_images_changed} of {images} | {c.search_test_change * 100:+.1f} points "
            f"| {c.refit_images_changed:.0f} of {images} | {c.refit_mean_change * 100:+.1f} points "
            f"| {c.baseline_refit_std * 100:.1f} points | {seconds[(c.task, c.variant)]:.0f} |"
        )
    return "\n".join([*lines, END])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=MIT_SPLIT)
    parser.add_argument("--tasks", nargs="+", default=["mlp", "patch_mlp"])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--storage", type=Path, default=Path("/tmp/scenetune-reproducibility"))
    parser.add_argument("--json", type=Path, default=REPO / "benchmarks" / "reproducibility.json")
    parser.add_argument("--out", type=Path, default=REPO / "BENCHMARKS.md")
    args = parser.parse_args()
    if not args.data.is_dir():
        raise SystemExit(f"reproducibility: no image folder at {args.data}; give one with --data")
    runs, changes = [], []
    for task in args.tasks:
        baseline = sweep(args, task, BASELINE)
        runs.append(baseline)
        for variant in [v for v in VARIANTS if v != BASELINE]:
            runs.append(sweep(args, task, variant))
            changes.append(change(baseline, runs[-1]))
    result = {
        "changes": [asdict(c) for c in changes],
        "runs": [{k: v for k, v in asdict(r).items() if not k.endswith("predicted")} for r in runs],
    }
    publish(args, result, START, END, section(args, runs, changes))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

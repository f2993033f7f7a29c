"""Measure scenetune against the baselines a user would otherwise run, in one run on one machine,
and write the figures (as ratios) into BENCHMARKS.md.

    .venv/bin/pip install -e ".[bench]"
    .venv/bin/python benchmarks/run_benchmarks.py [--only overhead,throughput,features,first_epoch,memory] [--out BENCHMARKS.md]

Every figure is measured here, in this run; nothing is copied from elsewhere.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
MIT_SPLIT = REPO.parent / "shared" / "datasets" / "MIT_split"
SCENETUNE = [sys.executable, "-m", "scenetune"]


def run_scenetune(arguments: list[str], env: dict[str, str] | None = None) -> float:
    """Wall-clock seconds of one scenetune command (it must succeed)."""
    started = time.perf_counter()
    subprocess.run(
        [*SCENETUNE, *arguments], check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    return time.perf_counter() - started


def trial_results(experiment: Path) -> list[list[dict[str, Any]]]:
    from scenetune.experiment import load_trials

    return [trial.history for trial in load_trials(experiment)]


# ---------- 1. per-trial overhead ----------

TINY_TRIAL = ["--epochs", "1", "--set", "image_size=8", "--set", "width=32", "--set", "depth=1"]


def run_bare_loop(n_trials: int) -> tuple[float, float]:
    """Wall-clock seconds of the bare Optuna loop as a command, and the seconds inside its loop."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "bare_optuna_loop.py"), "--trials", str(n_trials)],
        check=True,
        capture_output=True,
        text=True,
    )
    return time.perf_counter() - started, json.loads(done.stdout.strip().splitlines()[-1])["loop_seconds"]


def measure_overhead(work: Path, n_trials: int) -> dict[str, Any]:
    sweep_seconds = run_scenetune(
        [
            "sweep",
            "mlp",
            "--samples",
            str(n_trials),
            *TINY_TRIAL,
            "--max-concurrent",
            "1",
            "--storage",
            str(work),
            "--name",
            "overhead",
        ]
    )
    one_trial = run_scenetune(
        ["sweep", "mlp", "--samples", "1", *TINY_TRIAL, "--storage", str(work), "--name", "startup"]
    )
    bare_command, bare_loop = run_bare_loop(n_trials)
    in_trials = sum(h[-1]["trial_seconds"] for h in trial_results(work / "overhead"))
    return {
        "trials": n_trials,
        "scenetune_seconds": sweep_seconds,
        "bare_command_seconds": bare_command,
        "bare_loop_seconds": bare_loop,
        "one_trial_sweep_seconds": one_trial,
        "overhead_per_trial_s": (sweep_seconds - bare_command) / n_trials,
        "overhead_per_trial_vs_loop_alone_s": (sweep_seconds - bare_loop) / n_trials,
        "overhead_per_trial_after_startup_s": (
            (sweep_seconds - one_trial) - (bare_loop - bare_loop / n_trials)
        )
        / (n_trials - 1),
        "seconds_inside_trials": in_trials,
    }


# ---------- 2. training throughput ----------

THROUGHPUT_SHAPE = {"image_size": 32, "width": 1024, "depth": 2, "batch_size": 32, "epochs": 4}


def bare_pytorch_throughput(fused: bool) -> float:
    """Samples per second of a plain PyTorch loop over in-memory tensors: the trial's model, batch and one thread.

    fused=False is the optimizer a user writes (torch.optim.Adam's defaults); fused=True is scenetune's.
    """
    import torch
    from torch import nn

    from scenetune.data import load_dataset, make_trial_data
    from search_spaces import mlp as space
    from trainables.mlp import build_mlp

    torch.set_num_threads(1)
    torch.manual_seed(0)
    shape = THROUGHPUT_SHAPE
    data = make_trial_data(load_dataset("digits", [shape["image_size"]]), 0.15, False, 0)
    model, _ = build_mlp({**space.DEFAULTS, **shape, "batch_norm": False, "dropout": 0.0}, data)
    train = data.at_size(shape["image_size"])["train"]
    x, y = torch.from_numpy(train.x), torch.from_numpy(train.y)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=fused)
    rates = []
    for _ in range(shape["epochs"]):
        order = torch.randperm(len(y))
        started = time.perf_counter()
        for start in range(0, len(y), shape["batch_size"]):
            batch = order[start : start + shape["batch_size"]]
            loss = nn.functional.cross_entropy(model(x[batch]), y[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        rates.append(len(y) / (time.perf_counter() - started))
    return float(np.median(rates))


THROUGHPUT_ROUNDS = 3  # trial and bare loops alternate, so drift on a shared machine hits both alike


def trial_throughput(work: Path, name: str) -> float:
    """Median train samples/s over the epochs of one `mlp` trial of THROUGHPUT_SHAPE."""
    shape = THROUGHPUT_SHAPE
    run_scenetune(
        [
            "sweep",
            "mlp",
            "--samples",
            "1",
            "--epochs",
            str(shape["epochs"]),
            "--set",
            f"image_size={shape['image_size']}",
            "--set",
            f"width={shape['width']}",
            "--set",
            f"depth={shape['depth']}",
            "--set",
            f"batch_size={shape['batch_size']}",
            "--set",
            "optimizer=adam",
            "--set",
            "lr=0.001",
            "--set",
            "batch_norm=false",
            "--set",
            "dropout=0",
            "--set",
            "width_schedule=halve",
            "--max-concurrent",
            "1",
            "--storage",
            str(work),
            "--name",
            name,
        ]
    )
    (history,) = trial_results(work / name)
    return float(np.median([r["train_samples_per_s"] for r in history]))


def measure_throughput(work: Path) -> dict[str, Any]:
    rounds = [
        {
            "trial": trial_throughput(work, f"throughput-{i}"),
            "bare": bare_pytorch_throughput(fused=False),
            "bare_fused": bare_pytorch_throughput(fused=True),
        }
        for i in range(THROUGHPUT_ROUNDS)
    ]
    same_optimizer = [r["trial"] / r["bare_fused"] for r in rounds]
    return {
        **THROUGHPUT_SHAPE,
        "rounds": rounds,
        "trial_samples_per_s": float(np.median([r["trial"] for r in rounds])),
        "bare_samples_per_s": float(np.median([r["bare"] for r in rounds])),
        "bare_fused_samples_per_s": float(np.median([r["bare_fused"] for r in rounds])),
        "ratio": float(np.median([r["trial"] / r["bare"] for r in rounds])),
        "ratio_same_optimizer": float(np.median(same_optimizer)),
        "ratio_same_optimizer_range": [min(same_optimizer), max(same_optimizer)],
    }


# ---------- 3. feature tasks, cached vs recomputed ----------


def measure_feature_tasks(work: Path) -> dict[str, Any]:
    """Cached feature trials against what each would cost computing its features, on MIT_split when present."""
    from scenetune.data import load_dataset, make_trial_data
    from scenetune.sources import resolve_source
    from trainables.features import network_features

    scenes = MIT_SPLIT.is_dir()
    env = {
        **os.environ,
        "SCENETUNE_CACHE": tempfile.mkdtemp(prefix="st-bench-cache-"),
    }  # the first bovw trial computes everything
    data_arguments = ["--data", str(MIT_SPLIT)] if scenes else []
    source_size, bovw_size = (32, 64) if scenes else (16, 32)
    run_scenetune(
        [
            "sweep",
            "mlp",
            *data_arguments,
            "--samples",
            "1",
            "--epochs",
            "2",
            "--set",
            f"image_size={source_size}",
            "--set",
            "width=2048",
            "--set",
            "depth=2",
            "--storage",
            str(work),
            "--name",
            "source-mlp",
        ],
        env,
    )
    run_scenetune(
        [
            "sweep",
            "feature_svm",
            "--from",
            str(work / "source-mlp"),
            "--samples",
            "8",
            "--set",
            "layer=second",
            "--set",
            "kernel=rbf",
            "--max-concurrent",
            "1",
            "--storage",
            str(work),
            "--name",
            "svm",
        ],
        env,
    )
    svm = [h[-1] for h in trial_results(work / "svm")]
    cached = float(np.median([r["trial_seconds"] for r in svm if r["kernels_cached"]]))
    cold = float(
        np.median([r["trial_seconds"] for r in svm if not r["kernels_cached"]])
    )  # the worker's first: computes its kernels
    # Baseline: a trial with nothing cached, which extracts its features and computes its kernels.
    source = resolve_source(str(work / "source-mlp"), ("mlp",), "feature_svm")
    data = make_trial_data(
        load_dataset(str(MIT_SPLIT) if scenes else "digits", [source_size]), 0.15, False, 0
    )
    extraction = []
    for attempt in range(3):
        started = time.perf_counter()
        network_features(source.checkpoint, data, ["second"], f"benchmark-{attempt}")
        extraction.append(time.perf_counter() - started)
    recomputing = cold + float(np.median(extraction))
    run_scenetune(
        [
            "sweep",
            "bovw",
            *data_arguments,
            "--samples",
            "6",
            "--set",
            f"image_size={bovw_size}",
            "--set",
            "sift_step=4",
            "--set",
            "sift_size=8",
            "--set",
            "codebook_size=256",
            "--set",
            "kernel=rbf",
            "--max-concurrent",
            "1",
            "--storage",
            str(work),
            "--name",
            "bovw",
        ],
        env,
    )
    bovw = [h[-1] for h in trial_results(work / "bovw")]
    first = float(
        np.median(
            [r["trial_seconds"] for r in bovw if not r["word_counts_cached"] and not r["descriptors_cached"]]
        )
    )
    reused = [r for r in bovw if r["word_counts_cached"]]
    cached_bovw = float(np.median([r["trial_seconds"] for r in reused]))
    return {
        "data": "MIT_split" if scenes else "digits",
        "svm_source": f"{source_size}x{source_size} MLP 2048-1024, layer second (2048 features)",
        "svm_cached_trial_s": cached,
        "svm_fit_s": float(np.median([r["fit_seconds"] for r in svm if r["kernels_cached"]])),
        "svm_cold_trial_s": cold,
        "svm_extraction_s": float(np.median(extraction)),
        "svm_recomputing_trial_s": recomputing,
        "svm_speedup": recomputing / cached,
        "bovw_image_size": bovw_size,
        "bovw_descriptors_per_image": float(bovw[0]["descriptors_per_image"]),
        "bovw_first_trial_s": first,
        "bovw_cached_trial_s": cached_bovw,
        "bovw_fit_s": float(np.median([r["fit_seconds"] for r in reused])),
        "bovw_speedup": first / cached_bovw,
    }


# ---------- 5. time to the first epoch, cold and warm cache ----------


def time_to_first_epoch(work: Path, name: str, env: dict[str, str]) -> float:
    experiment = work / name
    started = time.perf_counter()
    process = subprocess.Popen(
        [
            *SCENETUNE,
            "sweep",
            "mlp",
            "--data",
            str(MIT_SPLIT),
            "--samples",
            "1",
            "--epochs",
            "1",
            "--set",
            "image_size=32",
            "--set",
            "width=256",
            "--storage",
            str(work),
            "--name",
            name,
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    while not any(p.stat().st_size for p in experiment.glob("*/result.json")):
        if process.poll() is not None:
            break
        time.sleep(0.05)
    elapsed = time.perf_counter() - started
    process.wait()
    return elapsed


def measure_first_epoch(work: Path) -> dict[str, Any]:
    if not MIT_SPLIT.is_dir():
        return {"skipped": f"{MIT_SPLIT} is absent"}
    cache = Path(tempfile.mkdtemp(prefix="st-bench-cache-"))
    env = {**os.environ, "SCENETUNE_CACHE": str(cache)}
    cold = time_to_first_epoch(work, "cold", env)
    warm = time_to_first_epoch(work, "warm", env)
    shutil.rmtree(cache, ignore_errors=True)
    return {"cold_cache_s": cold, "warm_cache_s": warm, "ratio": cold / warm}


# ---------- 6. memory with 2 and 8 concurrent trials ----------


def _tree_pss(root_pid: int) -> float:
    """Proportional set size of a process and all its descendants (shared pages counted once)."""
    import psutil

    total = 0.0
    try:
        processes = [psutil.Process(root_pid), *psutil.Process(root_pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    for process in processes:
        try:
            total += process.memory_full_info().pss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return total


def peak_memory(work: Path, name: str, concurrent: int, image_size: int) -> float:
    cpus = 2 / concurrent
    process = subprocess.Popen(
        [
            *SCENETUNE,
            "sweep",
            "mlp",
            "--data",
            str(MIT_SPLIT),
            "--samples",
            str(concurrent),
            "--epochs",
            "2",
            "--set",
            f"image_size={image_size}",
            "--set",
            "width=64",
            "--set",
            "depth=1",
            "--cpus-per-trial",
            str(cpus),
            "--max-concurrent",
            str(concurrent),
            "--storage",
            str(work),
            "--name",
            name,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    peak = 0.0
    while process.poll() is None:
        peak = max(peak, _tree_pss(process.pid))
        time.sleep(0.25)
    return peak / 2**20


def measure_memory(work: Path) -> dict[str, Any]:
    if not MIT_SPLIT.is_dir():
        return {"skipped": f"{MIT_SPLIT} is absent"}
    image_size = 64
    two = peak_memory(work, "memory-2", 2, image_size)
    eight = peak_memory(work, "memory-8", 8, image_size)
    dataset_mib = (1599 + 282 + 807) * image_size * image_size * 3 / 2**20
    return {
        "image_size": image_size,
        "dataset_mib": dataset_mib,
        "peak_pss_2_trials_mib": two,
        "peak_pss_8_trials_mib": eight,
        "per_extra_trial_mib": (eight - two) / 6,
    }


# ---------- report ----------


def machine() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    except (OSError, StopIteration):
        pass
    return f"{os.cpu_count()} CPU cores ({cpu}), Python {platform.python_version()}, torch {torch.__version__}, no GPU"


NOTES_MARKER = "<!-- Notes below are written by hand and kept when this script rewrites the file. -->"
# Measurement 4 at 5 epochs per trial (the CPU shortcut) and at the mlp task's default 20: row label, figures.
SEARCH_RESULTS = {
    "4": REPO / "benchmarks" / "search_efficiency.json",
    "4 (20 epochs)": REPO / "benchmarks" / "search_efficiency_20_epochs.json",
}
RAW_RESULTS = REPO / "benchmarks" / "run_benchmarks.json"


def _recorded_searches() -> dict[str, tuple[Path, dict[str, Any]]]:
    """Measurement 4's recorded runs by row label: each one's JSON file and its figures."""
    return {
        label: (path, json.loads(path.read_text()))
        for label, path in SEARCH_RESULTS.items()
        if path.is_file()
    }


def _rows(results: dict[str, Any], searches: dict[str, tuple[Path, dict[str, Any]]]) -> list[str]:
    rows = []
    if "overhead" in results:
        o = results["overhead"]
        rows.append(
            f"| 1 | per-trial overhead: {o['trials']} one-epoch trials (digits 8x8, one at a time), whole commands | "
            f"`scenetune sweep`: {o['scenetune_seconds']:.1f} s, Ray start-up and shutdown included | "
            f"bare in-process Optuna loop (`benchmarks/bare_optuna_loop.py`), same configs and training functions: "
            f"{o['bare_command_seconds']:.1f} s as a command, {o['bare_loop_seconds']:.1f} s inside its loop | "
            f"**{o['overhead_per_trial_s']:.2f} s per trial** vs the command; {o['overhead_per_trial_vs_loop_alone_s']:.2f} s vs the loop alone; "
            f"{o['overhead_per_trial_after_startup_s']:.2f} s once Ray is up (a one-trial sweep takes {o['one_trial_sweep_seconds']:.1f} s) | <= 0.3 s |"
        )
    if "throughput" in results:
        t = results["throughput"]
        rows.append(
            f"| 2 | training throughput inside an `mlp` trial ({t['image_size']}x{t['image_size']}, {t['width']}-{t['width'] // 2}, "
            f"batch {t['batch_size']}, 1 thread) | {t['trial_samples_per_s']:.0f} samples/s | bare PyTorch loop over in-memory tensors, "
            f"same model: {t['bare_samples_per_s']:.0f} samples/s with `torch.optim.Adam` as users write it, "
            f"{t['bare_fused_samples_per_s']:.0f} with fused Adam as scenetune runs it (medians of {len(t['rounds'])} alternating rounds) | "
            f"**{t['ratio']:.2f}**; {t['ratio_same_optimizer']:.2f} against the same optimizer "
            f"(rounds {t['ratio_same_optimizer_range'][0]:.2f}-{t['ratio_same_optimizer_range'][1]:.2f}) | >= 0.95 |"
        )
    if "features" in results:
        f = results["features"]
        rows.append(
            f"| 3a | `feature_svm` trial on {f['data']} ({f['svm_source']}), features extracted once before the sweep | "
            f"{f['svm_cached_trial_s']:.2f} s, kernels' inner products cached too (its SVM fit alone: {f['svm_fit_s']:.2f} s) | the same trial "
            f"with nothing cached: {f['svm_recomputing_trial_s']:.2f} s (feature extraction {f['svm_extraction_s']:.2f} s, then "
            f"{f['svm_cold_trial_s']:.2f} s computing its kernels and fitting) | **{f['svm_speedup']:.1f}x** faster | >= 10x |"
        )
        rows.append(
            f"| 3b | `bovw` trial on {f['data']} ({f['bovw_image_size']}x{f['bovw_image_size']}, dense SIFT step 4 = "
            f"{f['bovw_descriptors_per_image']:.0f} descriptors/image, k=256, RBF), word counts cached | "
            f"{f['bovw_cached_trial_s']:.2f} s (its SVM fit alone: {f['bovw_fit_s']:.2f} s) | the first trial, which computes descriptors, "
            f"codebook and counts: {f['bovw_first_trial_s']:.2f} s | **{f['bovw_speedup']:.1f}x** faster | >= 10x |"
        )
    rows += [_search_row(label, search) for label, (_, search) in searches.items()]
    if "first_epoch" in results:
        e = results["first_epoch"]
        rows.append(
            "| 5 | time to the first trial's first epoch on MIT_split (32x32), command start to first result | "
            + (
                f"not measured: {e['skipped']} | | | |"
                if "skipped" in e
                else f"warm cache: {e['warm_cache_s']:.1f} s | cold cache (decoding 2688 JPEGs): {e['cold_cache_s']:.1f} s | cold / warm = {e['ratio']:.2f} | |"
            )
        )
    if "memory" in results:
        m = results["memory"]
        rows.append(
            "| 6 | peak memory | not measured: " + m["skipped"] + " | | | |"
            if "skipped" in m
            else f"| 6 | peak memory (PSS of the sweep's process tree) on MIT_split at 64x64 (dataset {m['dataset_mib']:.0f} MiB as uint8) | "
            f"8 concurrent trials: {m['peak_pss_8_trials_mib']:.0f} MiB | 2 concurrent trials: {m['peak_pss_2_trials_mib']:.0f} MiB | "
            f"{m['per_extra_trial_mib']:.0f} MiB per extra trial | dataset once per node |"
        )
    return rows


def _reached(trial_epochs: int | None, budget: int) -> str:
    return f"matched it after {trial_epochs}" if trial_epochs else f"did not match it within {budget}"


def _search_row(label: str, search: dict[str, Any]) -> str:
    """Measurement 4, one clause per seed: when Optuna + ASHA first matched the presets' best, and each search's best at the budget."""
    clauses, fractions = [], []
    for r in search["replicates"]:
        reach, budget, at = r["reach_presets_best"], r["budget_trial_epochs"], r["at_budget"]
        fractions.append(r["optuna_fraction_of_presets_compute"])
        shuffled = r.get("presets_in_random_orders")
        own_order = (
            f" (their own trials in a random order match it after a median {shuffled['median_fraction']:.2f} of it, "
            f"within 0.2 in {shuffled['share_within_target']:.0%} of {shuffled['orders']} orders)"
            if shuffled
            else ""
        )
        clauses.append(
            f"seed {r['seed']}: presets' best val {r['presets_best_val_acc']:.3f} (test {at['presets']['test_acc']:.3f}) over {budget} trial-epochs{own_order}; "
            f"Optuna + ASHA {_reached(reach['optuna_asha'], budget)}, ended at val {at['optuna_asha']['best_val_acc']:.3f} "
            f"(test {at['optuna_asha']['test_acc']:.3f}); random search {_reached(reach['random'], budget)}, "
            f"ended at val {at['random']['best_val_acc']:.3f} (test {at['random']['test_acc']:.3f})"
        )
    shown = ", ".join("never" if f is None else f"{f:.2f}" for f in fractions)
    return (
        f"| {label} | search efficiency on MIT_split ({', '.join(search['pins'])}, {search['epochs']} epochs per trial, "
        f"seeds {', '.join(map(str, search['seeds']))}; `{search['command']}`, {search['date']}) | Optuna TPE + ASHA | "
        f"the study's one-factor presets run one after another; random search with the same compute | {'; '.join(clauses)} | "
        f"compute to reach the presets' best, as a fraction of theirs: **{shown}** (target <= 0.2) |"
    )


def _machines(results: dict[str, Any]) -> str:
    """Where the recorded measurements ran, as each recorded it."""
    return "; ".join(sorted({r.get("machine", "an unrecorded machine") for r in results.values()}))


def write_report(results: dict[str, Any], out: Path) -> None:
    notes = ""
    if out.is_file() and NOTES_MARKER in out.read_text():
        notes = out.read_text().split(NOTES_MARKER, 1)[1]
    dates = sorted({r["measured"] for r in results.values() if "measured" in r})
    searches = _recorded_searches()
    search_runs = "; ".join(
        f"`{search['command']}` ({search['date']}) on {search['machine']}" for _, search in searches.values()
    )
    lines = [
        "# Benchmarks",
        "",
        f"Produced by `python benchmarks/run_benchmarks.py` ({', '.join(dates)}) on {_machines(results)} and, "
        f"for measurement 4, {search_runs or '`python benchmarks/search_efficiency.py` (not run)'}.",
        "Every ratio compares scenetune with a baseline measured in the same run on the same machine.",
        "",
        "| # | measurement | scenetune | baseline | ratio / result | target |",
        "|---|---|---|---|---|---|",
        *_rows(results, searches),
        "",
        *[
            f"![measurement {label}: best-so-far accuracy against compute](benchmarks/{path.with_suffix('.png').name})"
            for label, (path, _) in searches.items()
        ],
        "",
        "Raw figures: "
        + ", ".join(
            f"`benchmarks/{path.name}`" for path in [RAW_RESULTS, *(path for path, _ in searches.values())]
        )
        + ".",
        "",
        NOTES_MARKER,
    ]
    out.write_text("\n".join(lines) + (notes or "\n"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(REPO / "BENCHMARKS.md"))
    parser.add_argument("--trials", type=int, default=100, help="trials for the overhead measurement")
    parser.add_argument(
        "--only", help="comma-separated measurements to rerun (the others keep their recorded figures)"
    )
    parser.add_argument(
        "--report", action="store_true", help="measure nothing: rewrite the report from the recorded figures"
    )
    args = parser.parse_args()
    if args.report:
        write_report(json.loads(RAW_RESULTS.read_text()), Path(args.out))
        return 0
    work = Path(tempfile.mkdtemp(prefix="st-bench-"))
    steps: dict[str, Callable[[Path], dict[str, Any]]] = {
        "overhead": lambda w: measure_overhead(w, args.trials),
        "throughput": measure_throughput,
        "features": measure_feature_tasks,
        "first_epoch": measure_first_epoch,
        "memory": measure_memory,
    }
    chosen = args.only.split(",") if args.only else list(steps)
    unknown = sorted(set(chosen) - set(steps))
    if unknown:
        parser.error(f"unknown measurement {unknown[0]!r}; choose from {', '.join(steps)}")
    results = json.loads(RAW_RESULTS.read_text()) if args.only and RAW_RESULTS.is_file() else {}
    for name in chosen:
        started = time.perf_counter()
        results[name] = {**steps[name](work), "measured": time.strftime("%Y-%m-%d"), "machine": machine()}
        print(f"{name}: {results[name]} ({time.perf_counter() - started:.0f} s)", flush=True)
        RAW_RESULTS.write_text(json.dumps(results, indent=2))
    write_report(results, Path(args.out))
    shutil.rmtree(work, ignore_errors=True)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Measurement 4: how much compute each way of searching the MLP space needs to reach the study's best.

Three strategies on one dataset, each given the compute (trial-epochs) that the study's one-factor
presets spend when run one after another:

- presets: every preset of `scenetune presets mlp` whose factor is not pinned, each to --epochs;
- optuna + ASHA: `scenetune sweep mlp` (TPE, ASHA stopping weak trials after 1 and 3 epochs);
- random: the same space sampled at random, every trial run to --epochs (`--sampler random --early-stopping none`).

    .venv/bin/python benchmarks/search_efficiency.py [--data DIR] [--epochs 5] [--set KEY=VALUE ...]

It writes benchmarks/search_efficiency.json and benchmarks/search_efficiency.png (best-so-far
validation and test accuracy against trial-epochs); run_benchmarks.py puts them into BENCHMARKS.md.
The defaults pin image_size=16 and width_schedule=halve so the three searches fit a 2-core CPU in
well under an hour (the 4096-wide constant-width networks cost minutes per epoch there); pass
`--no-default-pins --epochs 20` for the study's full protocol on a GPU.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from analysis.results import load_trials  # noqa: E402
from search_spaces.mlp import PRESETS  # noqa: E402

MIT_SPLIT = REPO.parent / "shared" / "datasets" / "MIT_split"
DEFAULT_PINS = ["image_size=16", "width_schedule=halve"]
# ASHA with grace 1 and reduction 3 runs a trial ~1.9 epochs on average at 5 epochs; asking for
# budget / 1.6 trials makes the search spend at least the budget, and the curve is cut there.
ASHA_EPOCHS_PER_TRIAL_LOW = 1.6


def run_sweep(arguments: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "scenetune", "sweep", "mlp", *arguments], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def epoch_results(experiment: Path) -> list[dict[str, Any]]:
    """Every epoch any trial reported, in the order they were reported."""
    rows = []
    for order, trial in enumerate(sorted(load_trials(experiment), key=lambda t: t.directory.name)):
        for row in trial.history:
            rows.append({"timestamp": row.get("timestamp", 0), "order": order, "epoch": row["epoch"],
                         "best_val_acc": row.get("best_val_acc", row.get("val_acc")), "test_acc": row.get("test_acc")})
    return sorted(rows, key=lambda r: (r["timestamp"], r["order"], r["epoch"]))


def best_so_far(rows: list[dict[str, Any]]) -> list[dict[str, float]]:
    """After each trial-epoch: the best validation accuracy so far and the test accuracy of that model."""
    curve, best_val, best_test = [], -1.0, float("nan")
    for compute, row in enumerate(rows, start=1):
        value = row["best_val_acc"]
        if value is not None and value == value and value > best_val:
            best_val, best_test = float(value), float(row["test_acc"])
        curve.append({"trial_epochs": compute, "best_val_acc": best_val, "test_acc": best_test})
    return curve


def first_reaching(curve: list[dict[str, float]], target: float) -> int | None:
    return next((point["trial_epochs"] for point in curve if point["best_val_acc"] >= target - 1e-12), None)


def presets_to_run(pins: list[str]) -> list[str]:
    pinned = {pin.split("=", 1)[0] for pin in pins}
    return [name for name, preset in PRESETS.items() if not pinned & set(preset.factors)]


def plot(curves: dict[str, list[dict[str, float]]], budget: int, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(11, 4), sharex=True)
    for label, curve in curves.items():
        x = [p["trial_epochs"] for p in curve]
        axes[0].step(x, [p["best_val_acc"] for p in curve], where="post", label=label)
        axes[1].step(x, [p["test_acc"] for p in curve], where="post", label=label)
    for axis, what in zip(axes, ("best validation accuracy so far", "test accuracy of that model")):
        axis.axvline(budget, color="grey", linestyle=":", linewidth=1)
        axis.set_xlabel("compute (trial-epochs)")
        axis.set_ylabel(what)
        axis.grid(alpha=0.3)
    axes[0].legend()
    figure.tight_layout()
    figure.savefig(out, dpi=110)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(MIT_SPLIT))
    parser.add_argument("--epochs", type=int, default=5, help="epochs of a preset or random trial; ASHA's maximum")
    parser.add_argument("--set", dest="pins", action="append", default=[], metavar="KEY=VALUE", help="pins shared by all three searches")
    parser.add_argument("--no-default-pins", action="store_true", help=f"do not add {' '.join(DEFAULT_PINS)}")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--storage", help="where the experiments go (default: a temporary folder)")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "search_efficiency"), help="writes OUT.json and OUT.png")
    args = parser.parse_args()
    if not Path(args.data).is_dir():
        print(f"search_efficiency: dataset folder {args.data} does not exist", file=sys.stderr)
        return 2
    pins = [*([] if args.no_default_pins else DEFAULT_PINS), *args.pins]
    storage = Path(args.storage or tempfile.mkdtemp(prefix="st-search-"))
    common = ["--data", args.data, "--seed", str(args.seed), "--storage", str(storage), *[a for pin in pins for a in ("--set", pin)]]

    presets = presets_to_run(pins)
    preset_rows, seconds = [], {"presets": 0.0}
    for name in presets:
        seconds["presets"] += run_sweep([*common, "--space", name, "--set", f"epochs={args.epochs}", "--name", f"preset-{name}"])
        preset_rows += epoch_results(storage / f"preset-{name}")  # one after another, as the study ran them
        print(f"preset {name}: {len(preset_rows)} trial-epochs so far", flush=True)
    budget = len(preset_rows)

    optuna_samples = math.ceil(budget / ASHA_EPOCHS_PER_TRIAL_LOW)
    seconds["optuna_asha"] = run_sweep([*common, "--samples", str(optuna_samples), "--epochs", str(args.epochs), "--name", "optuna-asha"])
    random_samples = math.ceil(budget / args.epochs)
    seconds["random"] = run_sweep([*common, "--samples", str(random_samples), "--epochs", str(args.epochs), "--sampler", "random",
                                   "--early-stopping", "none", "--name", "random"])

    spent = {"presets": budget, "optuna_asha": len(epoch_results(storage / "optuna-asha")), "random": len(epoch_results(storage / "random"))}
    curves = {
        "presets": best_so_far(preset_rows),
        "optuna_asha": best_so_far(epoch_results(storage / "optuna-asha"))[:budget],
        "random": best_so_far(epoch_results(storage / "random"))[:budget],
    }
    target = curves["presets"][-1]["best_val_acc"]
    summary = {
        "date": time.strftime("%Y-%m-%d"),
        "command": " ".join(["python benchmarks/search_efficiency.py", *sys.argv[1:]]),
        "data": args.data,
        "epochs": args.epochs,
        "pins": pins,
        "presets": presets,
        "budget_trial_epochs": budget,
        "trial_epochs_run": spent,
        "trials": {"presets": sum(r["epoch"] == 1 for r in preset_rows),
                   "optuna_asha": optuna_samples, "random": random_samples},
        "wall_seconds": seconds,
        "presets_best_val_acc": target,
        "presets_first_reach_best": first_reaching(curves["presets"], target),
        "reach_presets_best": {label: first_reaching(curve, target) for label, curve in curves.items()},
        "at_budget": {label: curve[-1] for label, curve in curves.items()},
        "curves": curves,
    }
    out = Path(args.out)
    out.with_suffix(".json").write_text(json.dumps(summary, indent=1))
    plot({"one-factor presets, one after another": curves["presets"], "Optuna TPE + ASHA": curves["optuna_asha"],
          "random search": curves["random"]}, budget, out.with_suffix(".png"))
    print(json.dumps({k: v for k, v in summary.items() if k != "curves"}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

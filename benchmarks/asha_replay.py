"""Would other ASHA rungs reach the presets' best sooner? Measurement 4's full curves, replayed.

Measurement 4 (`search_efficiency.py --epochs 20`) leaves two sets of trials that ran every epoch:
the study's one-factor presets, and random search's trials (its two priors first). This script
feeds those recorded epochs, trial after trial in random orders, through scenetune's own scheduler
(`PriorAwareASHA`) with other grace periods and reduction factors, and without early stopping,
and counts the trial-epochs spent until the presets' best validation accuracy is reached. It
trains nothing: the same curves go through each setting, so only the rungs differ.

Two pools of proposals, each after the two priors:
- presets: the one-factor variations of the defaults, like the proposals TPE makes around the best
  prior once it models the space;
- random: random search's own draws.

One trial at a time (the sweeps ran two at once), so a rung judges only trials already ended.

    .venv/bin/python benchmarks/asha_replay.py --storage /work/runs/se21 [--seeds 0 1 2 3 4] [--orders 2000]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from ray.tune.schedulers import TrialScheduler  # noqa: E402
from run_benchmarks import machine  # noqa: E402
from search_efficiency import DEFAULT_PINS, TARGET_FRACTION, epoch_results, presets_to_run, trials_in  # noqa: E402

from scenetune.scheduler import PriorAwareASHA  # noqa: E402

# (grace period, reduction factor); None: no early stopping. The first is what sweeps use.
SETTINGS: list[tuple[int, int] | None] = [(1, 3), (2, 3), (3, 3), (5, 3), (1, 2), (3, 2), (1, 4), None]
PRIORS = 2  # the defaults and model 1.4, which every search of measurement 4 runs first


@dataclass
class ReplayTrial:
    """What the scheduler reads of a trial: its id and its configuration."""

    trial_id: str
    config: dict[str, Any] = field(default_factory=dict)


def recorded_trials(experiment: Path) -> list[list[dict[str, Any]]]:
    """Each trial's epoch reports, in epoch order, trials in the order they started."""
    return sorted(trials_in(epoch_results(experiment)), key=lambda trial: trial[0]["order"])


def val_acc_curve(trial: list[dict[str, Any]]) -> list[float]:
    """A trial's validation accuracy per epoch: what ASHA judges."""
    return [row["val_acc"] for row in trial]


def images_scored(accuracies: list[float]) -> int:
    """How many images the accuracies were scored on: the least count that makes each a whole number."""
    return next(n for n in range(50, 100_000) if all(abs(a * n - round(a * n)) < 1e-4 for a in accuracies))


def make_scheduler(setting: tuple[int, int], epochs: int, images: int) -> PriorAwareASHA:
    grace, reduction = setting
    return PriorAwareASHA(
        priors=[{"replay_prior": index} for index in range(PRIORS)],
        time_attr="epoch",
        metric="val_acc",
        mode="max",
        max_t=epochs,
        grace_period=grace,
        reduction_factor=reduction,
        scored_images=images,
    )


def epochs_to_reach(
    priors: list[list[float]],
    proposals: list[list[float]],
    target: float,
    setting: tuple[int, int] | None,
    images: int,
    budget: int,
) -> int | None:
    """Trial-epochs until a validation score reaches target: priors first, then the proposals in the
    order given, each stopped where the scheduler says so (None: not within budget)."""
    epochs = max(len(curve) for curve in [*priors, *proposals])
    scheduler = make_scheduler(setting, epochs, images) if setting else None
    spent = 0
    for index, curve in enumerate([*priors, *proposals]):
        config = {"replay_prior": index} if index < len(priors) else {}
        trial = ReplayTrial(f"t{index}", config)
        if scheduler:
            scheduler.on_trial_add(None, trial)
        for epoch, value in enumerate(curve, start=1):
            spent += 1
            if value >= target - 1e-12:
                return spent
            if spent >= budget:
                return None
            if (
                scheduler
                and scheduler.on_trial_result(None, trial, {"epoch": epoch, "val_acc": value})
                == TrialScheduler.STOP
            ):
                break
        if scheduler:
            scheduler.on_trial_complete(None, trial, {})
    return None


def replay_seed(folder: Path, orders: int, seed: int) -> dict[str, Any]:
    """Every setting over the same random orders of one seed's presets and random draws."""
    import numpy as np

    preset_trials = [
        trial for name in presets_to_run(DEFAULT_PINS) for trial in recorded_trials(folder / f"preset-{name}")
    ]
    target = max(row["best_val_acc"] for trial in preset_trials for row in trial)
    budget = sum(len(trial) for trial in preset_trials)
    preset_curves = [val_acc_curve(trial) for trial in preset_trials]
    drawn = [val_acc_curve(trial) for trial in recorded_trials(folder / "random")]
    priors, random_draws = drawn[:PRIORS], drawn[PRIORS:]
    one_factor = [curve for curve in preset_curves if curve not in priors]
    images = images_scored([value for curve in drawn for value in curve])
    result: dict[str, Any] = {"target": target, "budget_trial_epochs": budget, "images_scored": images}
    for pool_name, pool in (("presets", one_factor), ("random", random_draws)):
        rng = random.Random(seed)
        shuffled = [rng.sample(pool, len(pool)) for _ in range(orders)]
        result[pool_name] = {}
        for setting in SETTINGS:
            np.random.seed(seed)  # ASHA draws a bracket per trial; with one bracket the draw is moot
            fractions = []
            for order in shuffled:
                spent = epochs_to_reach(priors, order, target, setting, images, budget)
                fractions.append(spent / budget if spent is not None else float("inf"))
            result[pool_name][setting_name(setting)] = {
                "median_fraction": statistics.median(fractions),
                "share_within_target": sum(f <= TARGET_FRACTION for f in fractions) / orders,
                "share_reached": sum(f != float("inf") for f in fractions) / orders,
            }
    return result


def setting_name(setting: tuple[int, int] | None) -> str:
    return f"grace {setting[0]}, reduction {setting[1]}" if setting else "no early stopping"


def markdown(replays: dict[int, dict[str, Any]]) -> str:
    seeds = list(replays)
    lines = [
        "| proposals | rungs | "
        + " | ".join(f"seed {s}: median / within {TARGET_FRACTION}" for s in seeds)
        + " |",
        "|---|---|" + "---|" * len(seeds),
    ]
    for pool in ("presets", "random"):
        for setting in SETTINGS:
            cells = []
            for s in seeds:
                cell = replays[s][pool][setting_name(setting)]
                median = cell["median_fraction"]
                reached = f"{median:.2f}" if median != float("inf") else "not"
                cells.append(f"{reached} / {cell['share_within_target']:.0%}")
            lines.append(f"| {pool} | {setting_name(setting)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storage", required=True, help="search_efficiency.py --epochs 20's --storage")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--orders", type=int, default=2000, help="random orders of each pool")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "asha_replay.json"))
    args = parser.parse_args()
    storage = Path(args.storage)
    missing = [s for s in args.seeds if not (storage / f"seed{s}" / "random").is_dir()]
    if missing:
        print(f"asha_replay: {storage} has no measurement 4 run for seed {missing[0]}", file=sys.stderr)
        return 2
    replays = {seed: replay_seed(storage / f"seed{seed}", args.orders, seed) for seed in args.seeds}
    summary = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": machine(),
        "command": " ".join(["python benchmarks/asha_replay.py", *sys.argv[1:]]),
        "orders": args.orders,
        "replays": replays,
    }
    Path(args.out).write_text(json.dumps(summary, indent=1, default=str))
    print(markdown(replays))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

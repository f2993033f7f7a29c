"""The baseline of measurement 1: the configurations a sweep tries, trained by scenetune's own training
functions in a plain in-process Optuna loop, as a user would write it without Ray Tune.

    .venv/bin/python benchmarks/bare_optuna_loop.py [--trials 100] [--seed 0]

Prints one JSON line: the seconds spent in the loop (the command's wall time is measured by the caller).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import optuna  # noqa: E402
import torch  # noqa: E402

from scenetune.data import load_dataset, make_trial_data  # noqa: E402
from scenetune.sweep import make_sampler  # noqa: E402
from search_spaces import mlp as space  # noqa: E402
from trainables.mlp import MLPTask, build_mlp  # noqa: E402
from trainables.training import (  # noqa: E402
    DeviceSplit,
    classification_loss,
    evaluate,
    make_optimizer,
    train_one_epoch,
)

# The overhead benchmark's tiny trials: 1 epoch of a 32-unit MLP on 8x8 digits.
PINNED = {"image_size": 8, "width": 32, "depth": 1}


def bare_optuna_loop(n_trials: int, seed: int) -> float:
    """Seconds for n_trials one-epoch trials, suggested by TPE and trained one after another in this process."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    torch.set_num_threads(1)  # a trial's share in the sweep: one CPU
    data = make_trial_data(load_dataset("digits", [PINNED["image_size"]]), 0.15, False, seed)
    splits = {
        k: DeviceSplit.from_split(v, torch.device("cpu"))
        for k, v in data.at_size(PINNED["image_size"]).items()
    }
    define = space.SPACE.define_by_run(PINNED, {"seed": seed, "epochs": 1})
    started = time.perf_counter()
    study = optuna.create_study(
        direction="maximize", sampler=make_sampler("tpe", seed)
    )  # the sweep's own TPE settings

    def objective(trial: optuna.Trial) -> float:
        constants = define(trial)  # suggests first, so trial.params is complete below
        config = {**trial.params, **constants}
        seed = MLPTask().trial_seed(config)  # the trainable's own seed
        torch.manual_seed(seed)
        model, _ = build_mlp(config, data)
        optimizer = make_optimizer(config, model.parameters())
        generator = torch.Generator().manual_seed(seed)
        train_one_epoch(
            model, splits["train"], optimizer, int(config["batch_size"]), generator, classification_loss
        )
        evaluate(model, splits["test"])
        return evaluate(model, splits["val"])[1]

    study.optimize(objective, n_trials=n_trials)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(json.dumps({"trials": args.trials, "loop_seconds": bare_optuna_loop(args.trials, args.seed)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""What a sweep is asked to do: every option of `scenetune sweep`, defined once. The command line,
the request the runner receives, and the settings recorded in scenetune.json all come from here."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from search_spaces.base import OPTUNA_SPACE


def option(flag: str | None, help: str, recorded: bool = False, **argparse_settings: Any) -> Any:
    """A sweep option, defined once: its field on the request, its command-line flag (None: set by the
    program, not the user), and whether it defines the experiment (`--resume` takes it from scenetune.json)."""
    default = argparse_settings.pop("default", None)
    factory = argparse_settings.pop("default_factory", None)
    metadata = {"flag": flag, "help": help, "recorded": recorded, "argparse": argparse_settings}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass
class SweepRequest:
    task: str = option("task", "the task to sweep (see `scenetune presets`)", recorded=True)
    data: str | None = option(
        "--data",
        "`digits` (built in, the default) or a folder DIR/{train,test}/<class>/<image>; feature tasks "
        "default to their --from experiment's data",
        recorded=True,
    )
    source: str | None = option(
        "--from",
        "feature tasks: the trained network (an experiment means its best trial)",
        recorded=True,
        metavar="EXPERIMENT_OR_CHECKPOINT",
    )
    space: str = option(
        "--space",
        "`optuna` (joint search with ASHA) or one of the study's presets",
        recorded=True,
        default=OPTUNA_SPACE,
    )
    samples: int | None = option(
        "--samples",
        "trials of the optuna space (default 20; presets run their grid)",
        recorded=True,
        type=int,
    )
    epochs: int | None = option("--epochs", "epochs per trial (ASHA's maximum)", recorded=True, type=int)
    seed: int = option(
        "--seed",
        "seeds suggestions, splits, initialisation and batch order",
        recorded=True,
        type=int,
        default=0,
    )
    pinned: dict[str, Any] = option(
        "--set",
        "pin a parameter, e.g. --set image_size=16",
        recorded=True,
        default_factory=dict,
        action="append",
        metavar="KEY=VALUE",
    )
    cpus_per_trial: float = option("--cpus-per-trial", "CPUs each trial holds", type=float, default=1.0)
    gpus_per_trial: float = option(
        "--gpus-per-trial", "fractions pack trials onto one GPU, e.g. 0.25", type=float, default=0.0
    )
    max_concurrent: int | None = option(
        "--max-concurrent", "trials at once (default: CPUs / cpus-per-trial)", type=int
    )
    no_prior: bool = option(
        "--no-prior",
        "optuna space: start cold, without first evaluating the task's defaults and the study's known-good configurations",
        recorded=True,
        default=False,
        action="store_true",
    )
    sampler: str = option(
        "--sampler",
        "optuna space: `tpe` (Optuna's TPE, the default), `gp` (Gaussian-process Bayesian optimisation, for searches of a few dozen trials) or `random`",
        recorded=True,
        default="tpe",
    )
    early_stopping: str = option(
        "--early-stopping",
        "optuna space: `asha` (stop weak trials early, the default) or `none`",
        recorded=True,
        default="asha",
    )
    time_budget_s: float | None = option(
        "--time-budget", "stop starting trials after this long", recorded=True, type=float, metavar="SECONDS"
    )
    val_fraction: float = option(
        "--val-fraction",
        "validation share carved from train (stratified)",
        recorded=True,
        type=float,
        default=0.15,
    )
    val_from_test: bool = option(
        "--val",
        "`test`: use the test folder as validation (the study's protocol)",
        recorded=True,
        default=False,
        choices=["test"],
    )
    refit: int = option(
        "--refit",
        "after the search, train the best configuration again with N seeds (on train+validation where "
        "validation came from train) and report test accuracy as mean ± std",
        recorded=True,
        type=int,
        default=0,
        metavar="N",
    )
    max_trial_seconds: float | None = option(
        "--max-trial-seconds",
        "stop a trial that would run longer, at once if its epochs project it past 1.5x the limit (status "
        "too_slow, not an error; priors run to the limit); default: a quarter of --time-budget",
        recorded=True,
        type=float,
        metavar="SECONDS",
    )
    storage: str = option(
        "--storage", "where experiments live: a folder or a URI (s3://...)", default="results"
    )
    name: str | None = option("--name", "experiment name (default TASK-SPACE-TIME)")
    resume: bool = option(
        "--resume", "continue the interrupted experiment --name", default=False, action="store_true"
    )
    address: str | None = option("--address", "join a running Ray cluster (e.g. auto or HOST:6379)")
    cache_dir: str | None = option(
        "--cache-dir", "dataset array cache (default $SCENETUNE_CACHE or ~/.cache/scenetune)"
    )
    skip_bad_images: bool = option(
        "--skip-bad-images",
        "go on past unreadable images, with a warning",
        default=False,
        action="store_true",
    )
    max_failures: int = option(
        "--max-failures", "retries of a failed trial from its checkpoint", type=int, default=2
    )
    verbose: bool = option(
        "--verbose", "show Ray's own progress tables and logs", default=False, action="store_true"
    )


# Settings that define an experiment; `--resume` takes them from scenetune.json, not the command line.
RECORDED_FIELDS = tuple(f.name for f in dataclasses.fields(SweepRequest) if f.metadata["recorded"])

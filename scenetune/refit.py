"""`--refit N`: after the search, train the best configuration again with N seeds, as Ray Tune trials
of their own experiment inside the sweep's folder (`<experiment>/refit`), so that the number a study
quotes is a mean over seeds with its spread, not one lucky run.

Each refit trains for the best trial's best epoch count, on train + validation where validation was
carved from train (with `--val test` the test folder must stay unseen, so on train alone), and keeps
its final weights and each test image's prediction.

"Best epoch count" is read with the noise of the validation split in mind: on MIT_split's 282
validation images one standard error of an accuracy near 0.5 is 3 points, and the best trial's
epoch-to-epoch accuracies differ by less than that, so the epoch that happened to score highest is
often an earlier one than the training supports. The refit trains for the most epochs whose
validation accuracy is within one standard error of the best, and for the planned epochs when the best
trial was cut short while still at its best. Measured on MIT_split (measurement 7):
one patch-MLP configuration refit for its noisy best epoch 3 tested at 0.496, for 5 epochs at 0.539.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Any

from scenetune.errors import UserError
from scenetune.experiment import (
    REFIT_DIR,
    RUN_TO_LIMIT,
    TRAIN_AND_VAL,
    Objective,
    TrialRecord,
    accuracy_standard_error,
    best_trial,
    is_finite_number,
    load_trials,
    objective_of,
    read_experiment_record,
)
from scenetune.heartbeat import driver_heartbeat
from scenetune.recovery import mend_for_resume, refusing_a_fresh_start

REFIT_SEED_OFFSET = 1000  # refit seeds differ from every search trial's seed


def refit_epochs(best: TrialRecord, objective: Objective, validation_images: int | None) -> int:
    """The most epochs the best trial trained whose score cannot be told from its best epoch's (within
    one binomial standard error for an accuracy; the best epoch itself for any other objective). If
    that is the last epoch of a trial cut short (its time limit, ASHA, the sweep's budget), the trial
    was still at its best when it stopped, so the count found is only a lower bound: the refit trains
    the epochs the search planned for it."""
    best_report = best.best_report(objective)
    planned = int(best.config.get("epochs") or 1)
    epochs = int(best_report.get("epoch") or planned)
    best_score = best_report.get(objective.metric)
    if is_accuracy(objective) and validation_images and is_finite_number(best_score):
        tolerance = accuracy_standard_error(best_score, validation_images)
        epochs = max(
            [epochs]
            + [
                int(report["epoch"])
                for report in best.scored_reports(objective)
                if report.get("epoch") and report[objective.metric] >= best_score - tolerance
            ]
        )
    return planned if epochs == last_scored_epoch(best, objective) < planned else epochs


def last_scored_epoch(trial: TrialRecord, objective: Objective) -> int:
    return max((int(report.get("epoch") or 0) for report in trial.scored_reports(objective)), default=0)


def noisy_best_epoch_note(best: TrialRecord, epochs: int, objective: Objective) -> str:
    """Why the refit trains longer than the best trial's best epoch, when it does."""
    best_epoch = best.best_report(objective).get("epoch")
    trained = last_scored_epoch(best, objective)
    if not best_epoch or int(best_epoch) == epochs:
        return ""
    if epochs > trained:
        return f" (the best trial was cut short after epoch {trained} while still at its best; {epochs} were planned)"
    return f" (its best epoch was {best_epoch}; epoch {epochs} scored within the validation split's noise)"


def refit_seconds_each(best: TrialRecord, epochs: int, growth: float) -> float | None:
    """One refit's time at the best trial's measured pace: its seconds per epoch (start-up included) for
    the refit's epochs, times `growth`, how many more images the refit trains on; None where the trial
    reported no time."""
    timed = [r for r in best.history if is_finite_number(r.get("trial_seconds")) and r.get("epoch")]
    if not timed:
        return None
    last = max(timed, key=lambda report: int(report["epoch"]))
    # A trial resumed from its checkpoint counts its seconds from the resume: its pace is that attempt's.
    attempt = [r for r in timed if r.get("attempt") == last.get("attempt")]
    trained = int(last["epoch"]) - min(int(r["epoch"]) for r in attempt) + 1
    return float(last["trial_seconds"]) / trained * epochs * growth


def _in_words(seconds: float) -> str:
    if seconds < 1:
        return "a second"
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


def training_growth(sizes: dict[str, int], on_validation: bool) -> float:
    """How many times the best trial's training images a refit trains on (train + validation, or train)."""
    train = sizes.get("train")
    if not on_validation or not train:
        return 1.0
    return (train + sizes.get("val", 0)) / train


def is_accuracy(objective: Objective) -> bool:
    return objective.mode == "max" and objective.metric.endswith("acc")


def refit_configs(
    best: TrialRecord, count: int, seed: int, on_validation: bool, epochs: int
) -> list[dict[str, Any]]:
    """The best trial's configuration once per seed, for `epochs` (see refit_epochs)."""
    base = {
        key: value for key, value in best.config.items() if key not in ("max_trial_seconds", RUN_TO_LIMIT)
    }
    return [
        {
            **base,
            "seed": seed + REFIT_SEED_OFFSET + index,
            "epochs": epochs,
            "refit": True,
            "refit_train_on": TRAIN_AND_VAL if on_validation else "train",
        }
        for index in range(count)
    ]


def run_refit(plan, trainable) -> list[TrialRecord]:
    """Run (or resume) the refit trials of a finished search; returns them."""
    from ray import tune

    request = plan.request
    directory = plan.experiment_dir / REFIT_DIR
    location = os.fspath(directory)
    restoring = tune.Tuner.can_restore(location)
    if restoring:
        for line in mend_for_resume(directory):
            print(f"scenetune: {line}", file=sys.stderr)
        tuner = tune.Tuner.restore(location, trainable=trainable, resume_unfinished=True, resume_errored=True)
    else:
        best = best_trial(plan.experiment_dir)
        if best is None:
            raise UserError(
                f"cannot refit: experiment {plan.experiment_dir} has no finished trial with a checkpoint"
            )
        record = read_experiment_record(plan.experiment_dir)
        objective = objective_of(record)
        sizes = record.get("data", {}).get("sizes", {})
        epochs = refit_epochs(best, objective, sizes.get("val"))
        count = request.refit if plan.task.seeded else 1
        on_validation = not request.val_from_test
        configs = refit_configs(best, count, request.seed, on_validation, epochs)
        seeds = f"{count} seeds" if plan.task.seeded else "once (a seed does not change its fit)"
        each = refit_seconds_each(best, epochs, training_growth(sizes, on_validation))
        pace = f"; about {_in_words(each)} each at the best trial's pace" if each is not None else ""
        print(
            f"scenetune: refitting trial {best.trial_id} {seeds} for {epochs} epochs"
            f"{noisy_best_epoch_note(best, epochs, objective)} on {configs[0]['refit_train_on']}{pace}"
        )
        tuner = configs_tuner(plan, trainable, configs, REFIT_DIR)
    with (
        driver_heartbeat(directory),
        refusing_a_fresh_start(location) if restoring else contextlib.nullcontext(),
    ):
        tuner.fit()
    return load_trials(directory)


def configs_tuner(plan, trainable, configs: list[dict[str, Any]], name: str):
    """A Tuner that trains exactly `configs`, each once, as the experiment `name` inside the sweep's
    folder, stored and reported as the search's trials are."""
    from ray import tune
    from ray.tune.search import BasicVariantGenerator

    from scenetune.progress import ProgressLine
    from scenetune.sweep import run_config, trial_dirname

    return tune.Tuner(
        trainable,
        param_space=dict(configs[0]),
        tune_config=tune.TuneConfig(
            search_alg=BasicVariantGenerator(
                points_to_evaluate=[dict(c) for c in configs], random_state=plan.request.seed
            ),
            num_samples=len(configs),
            reuse_actors=True,
            trial_dirname_creator=trial_dirname,
        ),
        run_config=run_config(
            plan.request,
            name,
            os.fspath(plan.experiment_dir),
            ProgressLine(len(configs), int(configs[0]["epochs"]), plan.task.space.defaults, refit=True),
        ),
    )

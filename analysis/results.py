"""Experiments read straight from their files: no Ray, and an experiment still running is fine.

One tidy pandas frame per experiment: a row per trial with its config (`config/<key>`), the
metrics of its best validation epoch, epochs run and status, plus a long frame of every epoch.
The files themselves are read by `scenetune.experiment`, the one module that knows their format.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from scenetune.experiment import (
    CONFIG_PREFIX,
    Objective,
    TrialRecord,
    config_of,
    driver_is_alive,
    is_experiment_dir,
    is_finite_number,
    load_trials,
    objective_of,
    ray_trial_failures,
    ray_trial_states,
    read_experiment_record,
)

METRICS = ("train_loss", "val_loss", "train_acc", "val_acc", "test_acc", "n_params", "trial_seconds")
STATUSES = (
    "completed",
    "stopped_early",
    "budget_ended",
    "too_slow",
    "diverged",
    "infeasible",
    "error",
    "running",
    "pending",
    "interrupted",
)
LOG_SCALE_RATIO = 50  # positive numbers spanning more than this ratio are shown (and modelled) on a log scale
DIVERGED_LOSS_FACTOR = 20.0  # a loss this many times the median loss is drawn as diverged, clipped


def loss_ceiling(losses: pd.Series) -> float | None:
    """Where loss charts stop: well above every sane loss, so one diverged trial (loss 1e6, NaN) does
    not flatten the other curves. None when there is no finite positive loss to measure against."""
    values = pd.to_numeric(losses, errors="coerce").astype(float)
    values = values[np.isfinite(values) & (values > 0)]
    return float(values.median() * DIVERGED_LOSS_FACTOR) if len(values) else None


# Columns every trials frame has, even with no trial yet (a sweep in its first seconds).
TRIAL_COLUMNS = (
    "trial_id",
    "order",
    "status",
    "error",
    "epochs_run",
    "retries",
    "best_epoch",
    "directory",
    "checkpoint",
    "cv_folds",  # > 0: val_acc is a cross-validated accuracy on train + validation (trainables/svm.py)
    *METRICS,
)


def trial_status(trial: TrialRecord, epochs: int, ray_status: str | None, driver_alive: bool = False) -> str:
    """One status per trial. A trial not run to its end reads `running` (or `pending`) while the sweep's
    driver is alive, and `interrupted` once it is gone (killed, Ctrl-C): `--resume` continues it."""
    if trial.error_message is not None and ray_status in (None, "ERROR"):
        return "error"
    last = trial.last
    if last.get("infeasible"):
        return "infeasible"
    if last.get("diverged"):
        return "diverged"
    if last.get("too_slow"):
        return "too_slow"  # stopped by its time limit (--max-trial-seconds): not an error
    reached_end = bool(last) and int(last.get("epoch", 0)) >= epochs
    if reached_end:
        return "completed"
    if ray_status == "TERMINATED":
        # A scheduler's stop is recorded with the epoch it judged (done); the end of the sweep's time
        # budget stops a running trial after its last report, or before its first.
        return "stopped_early" if last.get("done") else "budget_ended"
    if not driver_alive:
        return "interrupted"
    if not last:
        return "running" if ray_status == "RUNNING" else "pending"
    return "running"


@dataclass
class Experiment:
    path: Path
    record: dict[str, Any]
    trials: pd.DataFrame
    history: pd.DataFrame

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def task(self) -> str:
        return self.record.get("task", "?")

    @property
    def space(self) -> str:
        return self.record.get("space", "?")

    @property
    def defaults(self) -> dict[str, Any]:
        return self.record.get("defaults", {})

    @property
    def objective(self) -> Objective:
        return objective_of(self.record)

    def scored_trials(self) -> pd.DataFrame:
        """The trials whose objective is a finite number."""
        return self.trials[self.trials[self.objective.metric].map(is_finite_number)]

    def best_row(self) -> pd.Series | None:
        """The best trial for the recorded objective, or None while no trial has a score."""
        scored = self.scored_trials()
        if scored.empty:
            return None
        values = scored[self.objective.metric].astype(float)
        return scored.loc[values.idxmax() if self.objective.mode == "max" else values.idxmin()]

    @staticmethod
    def config_of(row: pd.Series) -> dict[str, Any]:
        return config_of(row.to_dict())

    def config_columns(self) -> list[str]:
        return [c for c in self.trials.columns if c.startswith(CONFIG_PREFIX)]

    def searched_params(self) -> list[str]:
        """Config keys whose value differs between trials."""
        varied = []
        for column in self.config_columns():
            values = self.trials[column].map(repr)
            if values.nunique() > 1:
                varied.append(column.removeprefix(CONFIG_PREFIX))
        return varied


def load_experiment(path: Path) -> Experiment:
    """Read one experiment directory into tidy frames."""
    path = Path(path)
    record = read_experiment_record(path) if is_experiment_dir(path) else {}
    objective = objective_of(record)
    epochs = int(record.get("epochs", 1))
    ray_states = ray_trial_states(path)
    failures = ray_trial_failures(path)
    driver_alive = driver_is_alive(path)
    rows, history_rows = [], []
    for order, trial in enumerate(load_trials(path)):
        trial_id = trial.trial_id
        status = trial_status(trial, epochs, ray_states.get(trial_id), driver_alive)
        best = trial.best_report(objective)
        row: dict[str, Any] = {
            "trial_id": trial_id,
            "order": order,
            "status": status,
            "error": trial.error_message if status == "error" else trial.last.get("error_message"),
            "epochs_run": len({r.get("epoch") for r in trial.history}),
            "retries": failures.get(trial_id, 0),
            "best_epoch": best.get("epoch"),
            "directory": str(trial.directory),
            "checkpoint": str(checkpoint) if (checkpoint := trial.checkpoint) else None,
            "cv_folds": int(best.get("cv_folds") or 0),
        }
        row.update({metric: best.get(metric) for metric in METRICS})
        row[objective.metric] = trial.best_score(objective)
        row.update({f"{CONFIG_PREFIX}{key}": value for key, value in trial.config.items()})
        rows.append(row)
        for report in trial.history:
            history_rows.append({"trial_id": trial_id, **{k: report.get(k) for k in ("epoch", *METRICS)}})
    trials = pd.DataFrame(
        rows, columns=list(dict.fromkeys([*TRIAL_COLUMNS, *(key for row in rows for key in row)]))
    )
    history = pd.DataFrame(history_rows, columns=["trial_id", "epoch", *METRICS])
    return Experiment(path, record, trials, history)

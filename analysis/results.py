"""Experiments read straight from their files: no Ray, and an experiment still running is fine.

One tidy pandas frame per experiment: a row per trial with its config (`config/<key>`), the
metrics of its best validation epoch, epochs run and status, plus a long frame of every epoch.
"""

from __future__ import annotations

import json
import math
import os
import re
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

EXPERIMENT_FILE = "scenetune.json"
RESULT_FILE = "result.json"
PARAMS_FILE = "params.json"
ERROR_FILE = "error.txt"
# Written by a sweep's driver while it runs (pid, host, time), removed when it ends: trials that Ray
# last saw running read as `interrupted` once no driver is alive.
DRIVER_FILE = ".scenetune-driver.json"
DRIVER_HEARTBEAT_S = 5.0
DRIVER_STALE_S = 60.0
METRICS = ("train_loss", "val_loss", "train_acc", "val_acc", "test_acc", "n_params", "trial_seconds")
STATUSES = ("completed", "stopped_early", "diverged", "infeasible", "error", "running", "pending", "interrupted")
CONFIG_PREFIX = "config/"


@dataclass
class TrialRecord:
    directory: Path
    config: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def trial_id(self) -> str | None:
        return self.history[-1].get("trial_id") if self.history else None

    @property
    def last(self) -> dict[str, Any]:
        return self.history[-1] if self.history else {}

    @property
    def best_val_acc(self) -> float | None:
        values = [r["val_acc"] for r in self.history if is_finite_number(r.get("val_acc")) and not r.get("diverged")]
        return max(values) if values else None

    @property
    def error_message(self) -> str | None:
        path = self.directory / ERROR_FILE
        if not path.is_file():
            return None
        lines = [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()]
        return lines[-1] if lines else "error"

    def checkpoints(self) -> list[Path]:
        return sorted(self.directory.glob("checkpoint_*"))


def is_present(value: Any) -> bool:
    """A value that is there: neither None nor NaN (pandas fills missing config keys with NaN)."""
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def is_finite_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def read_result_lines(path: Path) -> list[dict[str, Any]]:
    """One dict per complete JSON line; a half-written last line (a running trial) is skipped."""
    records = []
    if not path.is_file():
        return records
    for line in path.read_text(errors="replace").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def is_experiment_dir(path: Path) -> bool:
    return (path / EXPERIMENT_FILE).is_file()


def read_experiment_record(path: Path) -> dict[str, Any]:
    return json.loads((path / EXPERIMENT_FILE).read_text())


def _inside(path: Path, folder: Path) -> bool:
    """Whether path, links resolved, lies inside folder: a link leading elsewhere is never read."""
    try:
        return path.resolve().is_relative_to(folder.resolve())
    except (OSError, RuntimeError):
        return False


def load_trials(experiment_dir: Path) -> list[TrialRecord]:
    trials = []
    for params in sorted(Path(experiment_dir).glob(f"*/{PARAMS_FILE}")):
        directory = params.parent
        if not (_inside(params, experiment_dir) and _inside(directory / RESULT_FILE, experiment_dir)):
            continue
        try:
            config = json.loads(params.read_text())
        except json.JSONDecodeError:
            config = {}
        trials.append(TrialRecord(directory, config, read_result_lines(directory / RESULT_FILE)))
    return trials


def best_trial(experiment_dir: Path) -> TrialRecord | None:
    """The trial with the highest validation accuracy that has a checkpoint."""
    candidates = [t for t in load_trials(experiment_dir) if t.best_val_acc is not None and t.checkpoints()]
    return max(candidates, key=lambda t: t.best_val_acc) if candidates else None


def newest_experiment_state(experiment_dir: Path) -> Path | None:
    """Ray Tune's newest saved experiment state (the one a resume starts from), if any."""
    states = sorted(Path(experiment_dir).glob("experiment_state-*.json"))
    return states[-1] if states else None


def _ray_trial_entries(experiment_dir: Path) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(trial state, run metadata) per trial of Ray's newest saved experiment state."""
    state = newest_experiment_state(experiment_dir)
    if state is None:
        return []
    try:
        saved = json.loads(state.read_text())
        return [(json.loads(entry[0]), json.loads(entry[1])) for entry in saved["trial_data"]]
    except (OSError, json.JSONDecodeError, KeyError, IndexError, TypeError):
        return []  # being rewritten right now; statuses fall back to what the results say


def ray_trial_states(experiment_dir: Path) -> dict[str, str]:
    """trial id -> Ray's status (PENDING, RUNNING, TERMINATED, ERROR) from the newest saved state."""
    return {state["trial_id"]: state.get("status", "") for state, _ in _ray_trial_entries(experiment_dir)}


def ray_trial_failures(experiment_dir: Path) -> dict[str, int]:
    """trial id -> how often its worker failed and Ray retried it (a resume after a kill is no failure)."""
    return {state["trial_id"]: int(metadata.get("num_failures", 0) or 0) for state, metadata in _ray_trial_entries(experiment_dir)}


def driver_is_alive(experiment_dir: Path) -> bool:
    """Whether a sweep's driver is running this experiment now: its process, when it runs on this host,
    else a heartbeat newer than DRIVER_STALE_S."""
    try:
        driver = json.loads((Path(experiment_dir) / DRIVER_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        return False
    if driver.get("host") == socket.gethostname() and isinstance(driver.get("pid"), int):
        try:
            os.kill(driver["pid"], 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return time.time() - float(driver.get("updated", 0)) < DRIVER_STALE_S


def unfinished_trials(experiment_dir: Path, samples: int) -> int:
    """How many of the experiment's `samples` trials Ray has not run to an end (finished or failed)."""
    finished = sum(status in ("TERMINATED", "ERROR") for status in ray_trial_states(experiment_dir).values())
    return max(samples - finished, 0)


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
    reached_end = bool(last) and int(last.get("epoch", 0)) >= epochs
    if ray_status == "TERMINATED" or reached_end:
        return "completed" if reached_end else "stopped_early"
    if not driver_alive:
        return "interrupted"
    if not last:
        return "running" if ray_status == "RUNNING" else "pending"
    return "running"


# Columns every trials frame has, even with no trial yet (a sweep in its first seconds).
TRIAL_COLUMNS = ("trial_id", "order", "status", "error", "epochs_run", "retries", "best_epoch", "directory", "checkpoint", *METRICS)


def _trial_id_from_directory(directory: Path) -> str:
    """Trial folders are named <trainable>_<order:05d>_<trial id> (see scenetune.sweep.trial_dirname)."""
    match = re.match(r"^.*?_\d{5}_(.+)$", directory.name)
    return match.group(1) if match else directory.name


def _best_epoch_row(trial: TrialRecord) -> dict[str, Any]:
    """The report of the best validation epoch (the checkpoint's), or the last one."""
    usable = [r for r in trial.history if is_finite_number(r.get("val_acc")) and not r.get("diverged")]
    return max(usable, key=lambda r: r["val_acc"]) if usable else trial.last


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

    def config_columns(self) -> list[str]:
        return [c for c in self.trials.columns if c.startswith(CONFIG_PREFIX)]

    def searched_params(self) -> list[str]:
        """Config keys whose value differs between trials."""
        varied = []
        for column in self.config_columns():
            values = self.trials[column].map(repr)
            if values.nunique() > 1:
                varied.append(column[len(CONFIG_PREFIX):])
        return varied


def load_experiment(path: Path) -> Experiment:
    """Read one experiment directory into tidy frames."""
    path = Path(path)
    record = read_experiment_record(path) if is_experiment_dir(path) else {}
    epochs = int(record.get("epochs", 1))
    ray_states = ray_trial_states(path)
    failures = ray_trial_failures(path)
    driver_alive = driver_is_alive(path)
    rows, history_rows = [], []
    for order, trial in enumerate(load_trials(path)):
        trial_id = trial.trial_id or _trial_id_from_directory(trial.directory)
        status = trial_status(trial, epochs, ray_states.get(trial_id), driver_alive)
        best = _best_epoch_row(trial)
        row: dict[str, Any] = {
            "trial_id": trial_id,
            "order": order,
            "status": status,
            "error": trial.error_message if status == "error" else trial.last.get("error_message"),
            "epochs_run": len({r.get("epoch") for r in trial.history}),
            "retries": failures.get(trial_id, 0),
            "best_epoch": best.get("epoch"),
            "directory": str(trial.directory),
            "checkpoint": str(trial.checkpoints()[-1]) if trial.checkpoints() else None,
        }
        row.update({metric: best.get(metric) for metric in METRICS})
        row["val_acc"] = trial.best_val_acc
        row.update({f"{CONFIG_PREFIX}{key}": value for key, value in trial.config.items()})
        rows.append(row)
        for report in trial.history:
            history_rows.append({"trial_id": trial_id, **{k: report.get(k) for k in ("epoch", *METRICS)}})
    trials = pd.DataFrame(rows, columns=list(dict.fromkeys([*TRIAL_COLUMNS, *(key for row in rows for key in row)])))
    history = pd.DataFrame(history_rows, columns=["trial_id", "epoch", *METRICS])
    return Experiment(path, record, trials, history)

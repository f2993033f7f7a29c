"""What the dashboard and the HTML report show, as plain JSON-ready dicts built from the result files."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd

from analysis.results import LOG_SCALE_RATIO, STATUSES, Experiment, load_experiment, loss_ceiling
from analysis.uncertainty import checkpoint_interval
from scenetune.environment import describe as describe_environment
from scenetune.experiment import (
    DRIVER_FILE,
    driver_is_alive,
    is_experiment_dir,
    pruned_configs,
    rerun_command,
)
from scenetune.replication_steps import STATE_FILE as REPLICATION_STATE_FILE

STUDY_FILE = "study.json"
MAX_DEPTH = 3  # root/experiment, root/study/step, root/group/study/step
HIDDEN_PARAMS = frozenset({"seed"})
PAYLOAD_CACHE_SIZE = 256

T = TypeVar("T")
Signature = tuple[tuple[tuple[str, int, int], ...], tuple[bool, ...]]


def _json_value(value: Any) -> Any:
    """NaN and numpy scalars become JSON-safe values."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def json_safe(value: Any) -> Any:
    """A payload as strict JSON allows it: every NaN or infinity (a trial with no result yet, a diverged
    loss) becomes null, at any depth, so no answer fails to serialise."""
    if isinstance(value, dict):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    return _json_value(value)


def discover(root: Path) -> tuple[list[Path], list[Path]]:
    """Experiments (folders with scenetune.json), studies (with study.json) and replications (with
    their state file) under root.

    Links that lead outside root are not followed: the dashboard shows what lies under its root only.
    Root itself counts as a study or replication when it is one (`scenetune report <study folder>`).
    """
    experiments, studies, replications = [], [], []
    if (root / STUDY_FILE).is_file():
        studies.append(root)
    if (root / REPLICATION_STATE_FILE).is_file():
        replications.append(root)
    inside = root.resolve()
    frontier = [root]
    for _ in range(MAX_DEPTH):
        next_frontier = []
        for folder in frontier:
            children = (p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
            for child in sorted(p for p in children if p.resolve().is_relative_to(inside)):
                if is_experiment_dir(child):
                    experiments.append(child)
                else:
                    if (child / STUDY_FILE).is_file():
                        studies.append(child)
                    if (child / REPLICATION_STATE_FILE).is_file():
                        replications.append(child)
                    next_frontier.append(child)
        frontier = next_frontier
    return experiments, studies, replications


def relative_id(root: Path, path: Path) -> str:
    return path.resolve().relative_to(root.resolve()).as_posix()


def experiment_summary(root: Path, experiment: Experiment) -> dict[str, Any]:
    trials = experiment.trials
    counts = {status: int((trials["status"] == status).sum()) if len(trials) else 0 for status in STATUSES}
    best = experiment.best_row()
    data = experiment.record.get("data", {})
    return {
        "id": relative_id(root, experiment.path),
        "name": experiment.name,
        "task": experiment.task,
        "space": experiment.space,
        "dataset": data.get("source"),
        "classes": data.get("classes", []),
        "trials": len(trials),
        "finished": counts["completed"],
        "running": counts["running"] + counts["pending"],
        "interrupted": counts["interrupted"],
        "stopped": counts["stopped_early"] + counts["too_slow"] + counts["budget_ended"],
        "pruned": len(pruned_configs(experiment.path)),  # never started: estimated past the time limit
        "errors": counts["error"] + counts["diverged"] + counts["infeasible"],
        "best_val_acc": _json_value(best["val_acc"]) if best is not None else None,
        "best_test_acc": _json_value(best["test_acc"]) if best is not None else None,
        "best_test_95ci": checkpoint_interval(best["checkpoint"]) if best is not None else None,
        "started": experiment.record.get("created"),
    }


def study_summary(root: Path, study: Path) -> dict[str, Any]:
    table_path = study / "study.csv"
    rows = pd.read_csv(table_path).to_dict("records") if table_path.is_file() else []
    return {
        "id": relative_id(root, study),
        "name": study.name,
        "rows": [{k: _json_value(v) for k, v in row.items()} for row in rows],
    }


def replication_summary(root: Path, replication: Path) -> dict[str, Any]:
    from analysis.replication import replication_payload

    return {"id": relative_id(root, replication), **replication_payload(replication)}


def folder_signature(folder: Path) -> Signature:
    """Every file under folder with its modification time and size, and whether each sweep driver there
    is alive: it changes whenever anything there is written, or a driver dies (a killed driver writes
    nothing, but its running trials then read `interrupted`). Costs a directory walk (milliseconds)
    instead of reading the files."""
    entries, drivers = [], []
    for directory, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(directory, name)
            try:
                status = os.stat(path)
            except FileNotFoundError:  # replaced or removed while we walk: the next poll sees it
                continue
            entries.append((path, status.st_mtime_ns, status.st_size))
            if name == DRIVER_FILE:
                drivers.append(directory)
    return tuple(sorted(entries)), tuple(driver_is_alive(Path(directory)) for directory in sorted(drivers))


class PayloadCache:
    """A folder's payload computed again only when a file under it changed. The dashboard polls every 2 s;
    without it each poll reloads every trial of every experiment and redoes a replication's paired
    bootstraps (over a second of CPU per poll with a few dozen experiments, taken from running trials)."""

    def __init__(self, size: int = PAYLOAD_CACHE_SIZE) -> None:
        self.size = size
        self.entries: dict[tuple[str, str], tuple[Signature, Any]] = {}

    def get(self, kind: str, folder: Path, compute: Callable[[], T]) -> T:
        key = (kind, str(folder))
        signature = folder_signature(folder)
        cached = self.entries.get(key)
        if cached is not None and cached[0] == signature:
            return cached[1]
        if key not in self.entries and len(self.entries) >= self.size:
            self.entries.clear()
        value = compute()
        self.entries[key] = (signature, value)
        return value


def _experiment_entry(root: Path, path: Path) -> dict[str, Any]:
    return json_safe(experiment_summary(root, load_experiment(path)))


def replication_entry(root: Path, path: Path) -> dict[str, Any]:
    return json_safe(replication_summary(root, path))


def _uncached(kind: str, folder: Path, compute: Callable[[], T]) -> T:
    return compute()


def home_payload(
    root: Path, cache: PayloadCache | None = None, with_experiments: bool = True
) -> dict[str, Any]:
    """Every experiment, study and replication under root; with a cache, only the changed ones are read.
    Without experiments, their list is left empty (the report builds each experiment's page anyway)."""
    cached = cache.get if cache is not None else _uncached
    experiments, studies, replications = discover(root)
    return {
        "experiments": [
            cached("experiment", path, partial(_experiment_entry, root, path))
            for path in (experiments if with_experiments else [])
        ],
        "studies": [json_safe(study_summary(root, path)) for path in studies],
        "replications": [
            cached("replication", path, partial(replication_entry, root, path)) for path in replications
        ],
    }


def _config_of(row: pd.Series) -> dict[str, Any]:
    return {key: _json_value(value) for key, value in Experiment.config_of(row).items()}


def importance_payload(experiment: Experiment) -> dict[str, Any] | None:
    from analysis.importance import importance_table

    try:
        table = importance_table(experiment)
    except (ValueError, RuntimeError):
        return None  # too few scored trials, or nothing varies
    return {
        "params": list(table.index),
        **{column: [float(v) for v in table[column]] for column in table.columns},
    }


def experiment_payload(root: Path, path: Path, with_importance: bool = True) -> dict[str, Any]:
    experiment = load_experiment(path)
    params = [p for p in experiment.searched_params() if p not in HIDDEN_PARAMS]
    trials = []
    for _, row in experiment.trials.iterrows():
        config = _config_of(row)
        trials.append(
            {
                "trial_id": str(row["trial_id"]),
                "status": row["status"],
                "error": _json_value(row.get("error")),
                "epochs": int(row["epochs_run"]),
                **{
                    m: _json_value(row.get(m))
                    for m in ("val_acc", "test_acc", "train_acc", "val_loss", "train_loss", "n_params")
                },
                "params": {p: config.get(p) for p in params},
                "checkpoint": row.get("checkpoint"),
            }
        )
    history = {
        str(trial_id): {
            column: [_json_value(v) for v in group[column]]
            for column in ("epoch", "train_loss", "val_loss", "train_acc", "val_acc")
        }
        for trial_id, group in experiment.history.groupby("trial_id", sort=False)
    }
    summary = experiment_summary(root, experiment)
    best = None
    row = experiment.best_row()
    if row is not None:
        config = _config_of(row)
        best = {
            "trial_id": str(row["trial_id"]),
            "val_acc": _json_value(row["val_acc"]),
            "test_acc": _json_value(row["test_acc"]),
            "test_95ci": summary["best_test_95ci"],  # the summary's bootstrap of the same checkpoint
            "config": config,
            "command": rerun_command(experiment.record, config),
            "environment": describe_environment(environment)
            if (environment := experiment.record.get("environment"))
            else None,
            "checkpoint": row.get("checkpoint"),
        }
    return json_safe(
        {
            "summary": summary,
            "params": params,
            "trials": trials,
            "history": history,
            "best": best,
            "loss_ceiling": loss_ceiling(experiment.history[["train_loss", "val_loss"]].stack())
            if len(experiment.history)
            else None,
            "log_scale_ratio": LOG_SCALE_RATIO,
            "importance": importance_payload(experiment) if with_importance else None,
            "importance_trials": len(experiment.scored_trials()) if with_importance else None,
        }
    )

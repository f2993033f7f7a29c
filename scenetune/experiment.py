"""The experiment format: what an experiment folder holds and how to read it, in one place.

The sweep runner writes experiments and `analysis` reads them; both use this module and neither
imports the other. An experiment folder is Ray Tune's own directory plus scenetune's record:

    scenetune.json                the record: command, task, space, objective, seed, data, request
    .scenetune-driver.json        the running driver's heartbeat (removed when it ends)
    experiment_state-*.json       Ray Tune's state (what --resume continues from)
    <trainable>_<order>_<id>/     one folder per trial: params.json, result.json, checkpoint_*/

Nothing here imports Ray, torch or pandas.
"""

from __future__ import annotations

import json
import math
import re
import shlex
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

EXPERIMENT_FILE = "scenetune.json"
RESULT_FILE = "result.json"
PARAMS_FILE = "params.json"
# Marks a trial folder that a killed driver's worker wrote and no trial of the resumed sweep owns.
ORPHANED_FILE = "orphaned.txt"
ERROR_FILE = "error.txt"
CHECKPOINT_PREFIX = "checkpoint_"
CHECKPOINT_FIELD = "checkpoint_dir_name"  # in a report: the checkpoint Ray saved with it, or None
# In a checkpoint: the optimizer and sampling state a resumed trial continues from. Two thirds of an
# Adam-trained checkpoint; removed once the trial has ended, when nothing can continue it.
TRAINING_STATE_FILE = "training_state.pt"
REFIT_DIR = "refit"  # inside an experiment: the refit trials of its best configuration (--refit)
TRAIN_AND_VAL = "train+val"  # a refit's `refit_train_on` when validation was carved from train
# In a checkpoint: the class each test image was given and its true class, for intervals and paired tests.
TEST_PREDICTIONS_FILE = "test_predictions.npz"
# Written by a sweep's driver while it runs (pid, host, time), removed when it ends: trials that Ray
# last saw running read as `interrupted` once no driver is alive.
DRIVER_FILE = ".scenetune-driver.json"
# Written by a sweep's driver after each save of Ray's state: that whole save, for a resume after a kill.
KEPT_SAVE_FILE = ".scenetune-last-save.zip"
DRIVER_HEARTBEAT_S = 5.0
DRIVER_STALE_S = 60.0
PROCESS_START_SLACK_S = 1.0  # create_time is rounded to clock ticks
# Configurations a sweep pruned before they started (estimated first epoch past --max-trial-seconds).
PRUNED_FILE = "pruned.jsonl"
CONFIG_PREFIX = "config/"  # how tables name a trial's configuration columns
# Set by the sweep for tasks that score a search trial by cross-validation on train + validation
# (Task.cross_validates_selection) when validation was carved from train; absent in experiments
# made before it, which keep scoring on the validation split when resumed.
SELECT_BY_CROSS_VALIDATION = "select_by_cross_validation"
# Set in a prior's configuration: it runs to its time limit even when its epochs project it far past.
RUN_TO_LIMIT = "run_to_limit"
# Config keys that every trial carries but that are no hyperparameter of the task.
RUN_KEYS = frozenset({"seed", "epochs", "max_trial_seconds", RUN_TO_LIMIT, SELECT_BY_CROSS_VALIDATION})


# ---------- the objective ----------


@dataclass(frozen=True)
class Objective:
    """What a sweep optimises: the metric the searcher and ASHA see, and whether more is better."""

    metric: str = "val_acc"
    mode: str = "max"

    def better(self, a: float, b: float) -> bool:
        return a > b if self.mode == "max" else a < b

    def best(self, values: list[float]) -> float | None:
        return (max if self.mode == "max" else min)(values) if values else None


DEFAULT_OBJECTIVE = Objective()


def objective_of(record: Mapping[str, Any]) -> Objective:
    """The objective an experiment was run with, from its record."""
    return Objective(
        record.get("metric", DEFAULT_OBJECTIVE.metric), record.get("mode", DEFAULT_OBJECTIVE.mode)
    )


# ---------- values ----------


def accuracy_standard_error(accuracy: float, images: int) -> float:
    """One binomial standard error of an accuracy scored on `images` images: the noise of one score."""
    return math.sqrt(accuracy * (1 - accuracy) / images)


def is_accuracy_score(value: Any) -> bool:
    """A number between 0 and 1: not NaN, nor the -1 that older experiments' trials report as their best
    before an epoch scored."""
    return is_finite_number(value) and 0.0 <= value <= 1.0


def is_present(value: Any) -> bool:
    """A value that is there: neither None nor NaN (pandas fills missing config keys with NaN)."""
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def is_finite_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def config_of(columns: Mapping[str, Any]) -> dict[str, Any]:
    """A trial's configuration from a table row: its `config/<key>` columns that hold a value."""
    return {
        key[len(CONFIG_PREFIX) :]: value
        for key, value in columns.items()
        if key.startswith(CONFIG_PREFIX) and is_present(value)
    }


# ---------- trials ----------


@dataclass
class TrialRecord:
    directory: Path
    config: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def trial_id(self) -> str:
        if self.history and self.history[-1].get("trial_id"):
            return str(self.history[-1]["trial_id"])
        return trial_id_from_directory(self.directory)

    @property
    def last(self) -> dict[str, Any]:
        return self.history[-1] if self.history else {}

    def scored_reports(self, objective: Objective = DEFAULT_OBJECTIVE) -> list[dict[str, Any]]:
        """The epochs whose objective is a finite number; diverged ones, and an epoch cut short by the
        trial's time limit, left out."""
        return [
            r
            for r in self.history
            if is_finite_number(r.get(objective.metric))
            and not r.get("diverged")
            and not r.get("epoch_unfinished")
        ]

    def best_report(self, objective: Objective = DEFAULT_OBJECTIVE) -> dict[str, Any]:
        """The report of the best epoch (the checkpoint's), or the last one if none is scored."""
        scored = self.scored_reports(objective)
        if not scored:
            return self.last
        best = scored[0]
        for report in scored[1:]:
            if objective.better(report[objective.metric], best[objective.metric]):
                best = report
        return best

    def best_score(self, objective: Objective = DEFAULT_OBJECTIVE) -> float | None:
        return objective.best([r[objective.metric] for r in self.scored_reports(objective)])

    @property
    def error_message(self) -> str | None:
        path = self.directory / ERROR_FILE
        if not path.is_file():
            return None
        lines = [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()]
        return lines[-1] if lines else "error"

    def checkpoints(self) -> list[Path]:
        return sorted(self.directory.glob(f"{CHECKPOINT_PREFIX}*"))

    @property
    def checkpoint(self) -> Path | None:
        """The newest checkpoint that one of the trial's recorded reports names: its best epoch's weights
        (a trial saves one only when validation improves), or a refit's last epoch. A checkpoint that no
        report names is never taken: its worker saved it while the sweep was stopping the trial, before
        Ray recorded the epoch, so its weights match no accuracy in the tables (seen at the end of a
        study step's budget)."""
        if self.history and not any(CHECKPOINT_FIELD in report for report in self.history):
            # Reports that do not say which checkpoint they saved: the newest on disk.
            return self.checkpoints()[-1] if self.checkpoints() else None
        named = {self.directory / r[CHECKPOINT_FIELD] for r in self.history if r.get(CHECKPOINT_FIELD)}
        existing = [path for path in named if path.is_dir()]
        return max(existing) if existing else None


def trial_dirname(trainable_name: str, experiment_tag: str, trial_id: str) -> str:
    """Short trial folders in creation order: <trainable>_<order:05d>_<trial id>."""
    counter = str(experiment_tag).split("_", 1)[0]
    order = f"{int(counter):05d}_" if counter.isdigit() else ""
    return f"{trainable_name}_{order}{trial_id}"


def trial_id_from_directory(directory: Path) -> str:
    """The trial id that `trial_dirname` put at the end of a trial folder's name."""
    match = re.match(r"^.*?_\d{5}_(.+)$", directory.name)
    return match.group(1) if match else directory.name


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


def continued_lineage(reports: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The reports of the run a trial's final state descends from. A trial resumed or retried from a
    checkpoint reports the epochs after it again, and the checkpoint's own epochs once more (their
    reports may have been lost with a killed driver): each report of an epoch supersedes the earlier
    reports of that epoch and of every epoch after it."""
    lineage: list[dict[str, Any]] = []
    for report in reports:
        epoch = report.get("epoch")
        if is_finite_number(epoch):
            while lineage and is_finite_number(lineage[-1].get("epoch")) and lineage[-1]["epoch"] >= epoch:
                lineage.pop()
        lineage.append(report)
    return lineage


def _inside(path: Path, folder: Path) -> bool:
    """Whether path, links resolved, lies inside folder: a link leading elsewhere is never read."""
    try:
        return path.resolve().is_relative_to(folder.resolve())
    except (OSError, RuntimeError):
        return False


def load_trials(experiment_dir: Path) -> list[TrialRecord]:
    """Every trial folder of the experiment, in creation order, with the reports of its continued run;
    links leading outside it and folders marked as orphaned (the search ran their configuration again
    under another trial) are skipped."""
    trials = []
    for params in sorted(Path(experiment_dir).glob(f"*/{PARAMS_FILE}")):
        directory = params.parent
        if not (_inside(params, experiment_dir) and _inside(directory / RESULT_FILE, experiment_dir)):
            continue
        if (directory / ORPHANED_FILE).exists():
            continue
        try:
            config = json.loads(params.read_text())
        except json.JSONDecodeError:
            config = {}
        trials.append(
            TrialRecord(directory, config, continued_lineage(read_result_lines(directory / RESULT_FILE)))
        )
    return trials


# ---------- the record ----------


def is_experiment_dir(path: Path) -> bool:
    return (Path(path) / EXPERIMENT_FILE).is_file()


def read_experiment_record(path: Path) -> dict[str, Any]:
    return json.loads((Path(path) / EXPERIMENT_FILE).read_text())


def best_trial(experiment_dir: Path, keep: Callable[[TrialRecord], bool] | None = None) -> TrialRecord | None:
    """The trial with the best score for the experiment's recorded objective that has a checkpoint
    (among the trials `keep` accepts)."""
    objective = (
        objective_of(read_experiment_record(experiment_dir))
        if is_experiment_dir(experiment_dir)
        else DEFAULT_OBJECTIVE
    )
    best: TrialRecord | None = None
    for trial in load_trials(experiment_dir):
        score = trial.best_score(objective)
        if score is None or trial.checkpoint is None or (keep is not None and not keep(trial)):
            continue
        if best is None or objective.better(score, best.best_score(objective)):
            best = trial
    return best


def rerun_command(record: Mapping[str, Any], config: Mapping[str, Any]) -> str:
    """The `scenetune sweep` command that trains the given configuration again, as one trial, on the
    same data and the same train/validation split."""
    request = record.get("request", {})
    words = ["scenetune", "sweep", str(record.get("task", request.get("task", "?")))]
    if request.get("data"):
        words += ["--data", str(request["data"])]
    if request.get("source"):
        words += ["--from", str(request["source"])]
    if request.get("val_from_test"):
        words += ["--val", "test"]
    elif request.get("val_fraction") is not None:
        words += ["--val-fraction", f"{request['val_fraction']:g}"]
    words += ["--samples", "1", "--seed", str(request.get("seed", record.get("seed", 0)))]
    defaults = record.get("defaults", {})
    for key, value in config.items():
        if key in defaults or key == "epochs":
            words += ["--set", f"{key}={_cli_value(value)}"]
    return " ".join(shlex.quote(word) for word in words)


def _cli_value(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def short_value(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def describe_config(config: Mapping[str, Any], defaults: Mapping[str, Any], limit: int | None = None) -> str:
    """`key=value` for the known parameters whose value differs from the defaults."""
    changed = [
        f"{key}={short_value(value)}"
        for key, value in config.items()
        if key in defaults and key not in RUN_KEYS and defaults[key] != value
    ]
    if limit is not None and len(changed) > limit:
        changed = changed[:limit] + ["..."]
    return " ".join(changed) or "defaults"


# ---------- Ray Tune's state ----------


EXPERIMENT_STATE_PREFIX = "experiment_state-"  # Ray names its state files by the session that saved them


def newest_experiment_state(experiment_dir: Path) -> Path | None:
    """Ray Tune's newest saved experiment state (the one a resume starts from), if any."""
    states = sorted(Path(experiment_dir).glob(f"{EXPERIMENT_STATE_PREFIX}*.json"))
    return states[-1] if states else None


def session_of(experiment_state: Path) -> str:
    """The Ray session whose save a state file is part of: its name is experiment_state-<session>.json."""
    return experiment_state.name.removeprefix(EXPERIMENT_STATE_PREFIX).removesuffix(".json")


def saved_state_files(folder: Path, session: str) -> dict[str, Path]:
    """The state files one Ray session saved in a folder (not the temporary ones it writes first)."""
    return {
        path.name: path
        for path in Path(folder).glob(f"*-{session}.*")
        if path.is_file() and not path.name.startswith((".", "tmp-"))
    }


def ray_trial_entries(experiment_dir: Path) -> list[tuple[str, str]]:
    """(trial state JSON, run metadata JSON) per trial of Ray's newest saved experiment state."""
    state = newest_experiment_state(experiment_dir)
    return [] if state is None else trial_entries(state)


def trial_entries(experiment_state: Path) -> list[tuple[str, str]]:
    """(trial state JSON, run metadata JSON) per trial of one saved experiment state file."""
    try:
        return [(entry[0], entry[1]) for entry in json.loads(experiment_state.read_text())["trial_data"]]
    except (OSError, json.JSONDecodeError, KeyError, IndexError, TypeError):
        return []  # being rewritten right now; statuses fall back to what the results say


def _decoded_entries(experiment_dir: Path) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    try:
        return [
            (json.loads(state), json.loads(metadata)) for state, metadata in ray_trial_entries(experiment_dir)
        ]
    except (json.JSONDecodeError, TypeError):
        return []


def ray_trial_states(experiment_dir: Path) -> dict[str, str]:
    """trial id -> Ray's status (PENDING, RUNNING, TERMINATED, ERROR) from the newest saved state."""
    return {state["trial_id"]: state.get("status", "") for state, _ in _decoded_entries(experiment_dir)}


def ray_trial_failures(experiment_dir: Path) -> dict[str, int]:
    """trial id -> how often its worker failed and Ray retried it (a resume after a kill is no failure)."""
    return {
        state["trial_id"]: int(metadata.get("num_failures", 0) or 0)
        for state, metadata in _decoded_entries(experiment_dir)
    }


def unfinished_trials(experiment_dir: Path, samples: int) -> int:
    """How many of the experiment's `samples` trials Ray has not run to an end (finished or failed)."""
    finished = sum(status in ("TERMINATED", "ERROR") for status in ray_trial_states(experiment_dir).values())
    return max(samples - finished, 0)


def running_driver(experiment_dir: Path) -> dict[str, Any] | None:
    """The heartbeat of the driver running this experiment now, or None: on this host its process must
    still run and have started before its heartbeat (a pid reused after a kill or a reboot is another
    process); on another host the heartbeat must be newer than DRIVER_STALE_S."""
    import psutil

    try:
        driver = json.loads((Path(experiment_dir) / DRIVER_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if driver.get("host") == socket.gethostname() and isinstance(driver.get("pid"), int):
        try:
            started = psutil.Process(driver["pid"]).create_time()
        except psutil.NoSuchProcess:
            return None
        except psutil.AccessDenied:
            return driver
        return driver if started <= float(driver.get("started", 0)) + PROCESS_START_SLACK_S else None
    return driver if time.time() - float(driver.get("updated", 0)) < DRIVER_STALE_S else None


def driver_is_alive(experiment_dir: Path) -> bool:
    """Whether a sweep's driver is running this experiment now."""
    return running_driver(experiment_dir) is not None


def pruned_configs(experiment_dir: Path) -> list[dict[str, Any]]:
    """The configurations a sweep pruned before they started, oldest first."""
    path = Path(experiment_dir) / PRUNED_FILE
    if not path.is_file():
        return []
    entries = []
    for line in path.read_text().splitlines():
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line cut short by a killed driver
    return entries


def trains_on_validation(config: Mapping[str, Any]) -> bool:
    """Whether a trial is a refit that trains on train + validation (validation carved from train)."""
    return bool(config.get("refit")) and config.get("refit_train_on") == TRAIN_AND_VAL

"""Trials of a Ray Tune experiment directory, read straight from its files."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

EXPERIMENT_FILE = "scenetune.json"
RESULT_FILE = "result.json"
PARAMS_FILE = "params.json"


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
        values = [r["val_acc"] for r in self.history if r.get("val_acc") is not None and not r.get("diverged")]
        return max(values) if values else None

    def checkpoints(self) -> list[Path]:
        return sorted(self.directory.glob("checkpoint_*"))


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


def load_trials(experiment_dir: Path) -> list[TrialRecord]:
    trials = []
    for params in sorted(Path(experiment_dir).glob(f"*/{PARAMS_FILE}")):
        directory = params.parent
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

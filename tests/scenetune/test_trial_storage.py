"""Ended trials lose their optimizer state only once Ray's saved experiment state says they ended."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pyarrow.fs

from scenetune.experiment import ORPHANED_FILE, PARAMS_FILE, RESULT_FILE, TRAINING_STATE_FILE, load_trials
from scenetune.trial_storage import DropEndedTrainingState

TRIAL_ID = "abc_00001"


def save_ray_state(experiment: Path, status: str) -> None:
    """Ray's experiment state as it writes it: one [trial state, run metadata] JSON pair per trial."""
    entry = [json.dumps({"trial_id": TRIAL_ID, "status": status}), json.dumps({})]
    (experiment / "experiment_state-2026-11-30_18-00-00.json").write_text(json.dumps({"trial_data": [entry]}))


def ended_trial(trial_dir: Path) -> SimpleNamespace:
    """The fields of Ray's Trial the callback reads, for a trial the driver has seen end."""
    return SimpleNamespace(
        trial_id=TRIAL_ID,
        status="TERMINATED",
        path=str(trial_dir),
        storage=SimpleNamespace(storage_filesystem=pyarrow.fs.LocalFileSystem()),
    )


def save_checkpoint(checkpoint: Path) -> None:
    checkpoint.mkdir(parents=True)
    (checkpoint / "model.pt").write_bytes(b"weights")
    (checkpoint / TRAINING_STATE_FILE).write_bytes(b"optimizer")


def test_the_optimizer_state_goes_only_once_the_saved_state_records_the_trial_as_ended(
    tmp_path: Path,
) -> None:
    checkpoint = tmp_path / "sweep" / "train_mlp_00001_abc" / "checkpoint_000002"
    save_checkpoint(checkpoint)
    trial = ended_trial(checkpoint.parent)
    dropper = DropEndedTrainingState()
    # Killed now, Ray would resume the trial from its checkpoint: the optimizer state must stay.
    save_ray_state(tmp_path / "sweep", "RUNNING")
    dropper.on_experiment_end(trials=[trial])
    assert (checkpoint / TRAINING_STATE_FILE).is_file()
    save_ray_state(tmp_path / "sweep", "TERMINATED")
    dropper.on_experiment_end(trials=[trial])
    assert not (checkpoint / TRAINING_STATE_FILE).exists() and (checkpoint / "model.pt").is_file()
    assert dropper.freed == {TRIAL_ID}


def test_a_trial_folder_a_killed_driver_left_behind_loses_its_optimizer_state_at_the_end(
    tmp_path: Path,
) -> None:
    """A trial the killed driver had just started is in no saved state; its worker saved one epoch."""
    experiment = tmp_path / "sweep"
    save_checkpoint(experiment / "train_mlp_00001_abc" / "checkpoint_000001")
    orphan = experiment / "train_mlp_00002_def" / "checkpoint_000000"
    save_checkpoint(orphan)
    for trial_dir in (experiment / "train_mlp_00001_abc", orphan.parent):
        (trial_dir / PARAMS_FILE).write_text(json.dumps({"lr": 0.001}))
        (trial_dir / RESULT_FILE).write_text(json.dumps({"epoch": 1, "val_acc": 0.5}) + "\n")
    save_ray_state(experiment, "TERMINATED")
    dropper = DropEndedTrainingState()
    dropper.on_step_end(iteration=1, trials=[ended_trial(experiment / "train_mlp_00001_abc")])
    assert (orphan / TRAINING_STATE_FILE).is_file()  # during the sweep a folder may belong to a new trial
    dropper.on_experiment_end(trials=[ended_trial(experiment / "train_mlp_00001_abc")])
    assert not list(experiment.glob(f"*/*/{TRAINING_STATE_FILE}"))
    assert (orphan / "model.pt").is_file()
    # Its weights stay on disk, but tables and the best trial see the configuration once.
    assert [trial.directory.name for trial in load_trials(experiment)] == ["train_mlp_00001_abc"]
    assert "killed sweep" in (orphan.parent / ORPHANED_FILE).read_text()

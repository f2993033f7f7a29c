"""Which checkpoint stands for a trial: the newest one its recorded reports name."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from analysis.results import load_experiment
from scenetune.experiment import (
    CHECKPOINT_FIELD,
    PARAMS_FILE,
    RESULT_FILE,
    TEST_PREDICTIONS_FILE,
    best_trial,
    load_trials,
)

LABELS = np.zeros(10, dtype=np.int64)


def save_checkpoint(trial_dir: Path, name: str, right: int) -> None:
    """A checkpoint whose model got the first `right` of 10 test images right."""
    checkpoint = trial_dir / name
    checkpoint.mkdir(parents=True)
    predicted = np.where(np.arange(10) < right, 0, 1)
    np.savez(checkpoint / TEST_PREDICTIONS_FILE, predicted=predicted, labels=LABELS)


def write_trial(trial_dir: Path, reports: list[dict]) -> None:
    trial_dir.mkdir(parents=True, exist_ok=True)
    (trial_dir / PARAMS_FILE).write_text(json.dumps({"lr": 0.001}))
    (trial_dir / RESULT_FILE).write_text("".join(json.dumps(r) + "\n" for r in reports))


def test_a_checkpoint_saved_after_the_last_recorded_report_is_not_the_trials(tmp_path: Path) -> None:
    """As at the end of a study step's budget: the worker saved epoch 4's improvement, but the sweep
    stopped the trial before Ray recorded the epoch, so no accuracy in the tables is that model's."""
    trial_dir = tmp_path / "sweep" / "train_mlp_00001_abc"
    reports = [
        {"epoch": e, "val_acc": v, "test_acc": t / 10, CHECKPOINT_FIELD: f"checkpoint_00000{e - 1}"}
        for e, v, t in ((1, 0.5, 5), (2, 0.6, 6), (3, 0.7, 7))
    ]
    write_trial(trial_dir, reports)
    save_checkpoint(trial_dir, "checkpoint_000002", right=7)  # epoch 3's; Ray kept only the newest
    save_checkpoint(trial_dir, "checkpoint_000003", right=9)  # saved, never recorded
    trial = load_trials(tmp_path / "sweep")[0]
    assert trial.checkpoint == trial_dir / "checkpoint_000002"
    assert best_trial(tmp_path / "sweep").checkpoint == trial_dir / "checkpoint_000002"
    row = load_experiment(tmp_path / "sweep").trials.iloc[0]
    assert row["checkpoint"] == str(trial_dir / "checkpoint_000002") and row["test_acc"] == 0.7


def test_a_trial_with_no_recorded_report_has_no_checkpoint(tmp_path: Path) -> None:
    trial_dir = tmp_path / "sweep" / "train_mlp_00001_abc"
    write_trial(trial_dir, [])
    save_checkpoint(trial_dir, "checkpoint_000000", right=3)
    assert load_trials(tmp_path / "sweep")[0].checkpoint is None
    assert best_trial(tmp_path / "sweep") is None


def test_reports_that_do_not_name_their_checkpoint_fall_back_to_the_newest(tmp_path: Path) -> None:
    trial_dir = tmp_path / "sweep" / "train_mlp_00001_abc"
    write_trial(trial_dir, [{"epoch": 1, "val_acc": 0.5}])
    save_checkpoint(trial_dir, "checkpoint_000000", right=5)
    save_checkpoint(trial_dir, "checkpoint_000001", right=6)
    assert load_trials(tmp_path / "sweep")[0].checkpoint == trial_dir / "checkpoint_000001"


def test_a_resumed_trials_history_is_the_run_its_final_weights_descend_from(tmp_path: Path) -> None:
    """Killed after epoch 4 with epoch 2's checkpoint recorded: the resumed trial reports epoch 2 again
    (from its checkpoint) and trains epochs 3 to 5 again. The best epoch and checkpoint are the
    continued run's, not epoch 4's of the run that was thrown away."""
    trial_dir = tmp_path / "sweep" / "train_mlp_00001_abc"
    first_run = [
        {"epoch": 1, "val_acc": 0.5, "test_acc": 0.5, CHECKPOINT_FIELD: "checkpoint_000000"},
        {"epoch": 2, "val_acc": 0.6, "test_acc": 0.6, CHECKPOINT_FIELD: "checkpoint_000001"},
        {"epoch": 3, "val_acc": 0.55, "test_acc": 0.6, CHECKPOINT_FIELD: None},
        {"epoch": 4, "val_acc": 0.9, "test_acc": 0.9, CHECKPOINT_FIELD: "checkpoint_000002"},
    ]
    continued = [
        {"epoch": 2, "val_acc": 0.6, "test_acc": 0.6, CHECKPOINT_FIELD: "checkpoint_000002"},
        {"epoch": 3, "val_acc": 0.65, "test_acc": 0.66, CHECKPOINT_FIELD: "checkpoint_000003"},
        {"epoch": 4, "val_acc": 0.62, "test_acc": 0.66, CHECKPOINT_FIELD: None},
        {"epoch": 5, "val_acc": 0.64, "test_acc": 0.66, CHECKPOINT_FIELD: None},
    ]
    write_trial(trial_dir, first_run + continued)
    save_checkpoint(trial_dir, "checkpoint_000003", right=7)
    trial = load_trials(tmp_path / "sweep")[0]
    assert [r["epoch"] for r in trial.history] == [1, 2, 3, 4, 5]
    assert trial.history[1:] == continued
    assert trial.best_report()["epoch"] == 3 and trial.checkpoint == trial_dir / "checkpoint_000003"
    row = load_experiment(tmp_path / "sweep").trials.iloc[0]
    assert row["val_acc"] == 0.65 and row["epochs_run"] == 5

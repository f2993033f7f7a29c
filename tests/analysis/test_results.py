"""One status per trial, from its reports and Ray's state: who ended it."""

from __future__ import annotations

from pathlib import Path

import pytest

from analysis.results import trial_status
from scenetune.experiment import TrialRecord


@pytest.mark.parametrize(
    ("history", "status"),
    [
        ([{"epoch": 1, "done": False}, {"epoch": 5, "done": True}], "completed"),
        # ASHA's stop is recorded with the epoch it judged.
        ([{"epoch": 1, "done": True}], "stopped_early"),
        # The sweep's time budget stopped it after its last report, or before its first.
        ([{"epoch": 1, "done": False}, {"epoch": 2, "done": False}], "budget_ended"),
        ([], "budget_ended"),
        ([{"epoch": 1, "done": False, "too_slow": True}], "too_slow"),
    ],
    ids=["completed", "asha", "budget", "budget-before-first-epoch", "too-slow"],
)
def test_a_terminated_trial_says_what_ended_it(history: list[dict], status: str) -> None:
    trial = TrialRecord(Path("train_mlp_00001_abc"), {}, history)
    assert trial_status(trial, epochs=5, ray_status="TERMINATED") == status

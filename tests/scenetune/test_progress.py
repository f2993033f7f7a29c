"""The sweep's progress line: what it says, and that it is redrawn while no trial reports."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from scenetune.progress import REFRESH_S, ProgressLine


def _trial(trial_id: str, status: str, epoch: int | None) -> SimpleNamespace:
    return SimpleNamespace(
        trial_id=trial_id, status=status, config={}, last_result={} if epoch is None else {"epoch": epoch}
    )


def test_the_line_names_each_running_trials_epoch() -> None:
    line = ProgressLine(total=4, epochs=20, defaults={})
    trials = [
        _trial("a", "RUNNING", None),
        _trial("b", "RUNNING", 6),
        _trial("c", "TERMINATED", 20),
        _trial("d", "PENDING", None),
    ]
    text = line.render(trials)
    assert "trials 1/4 done" in text and "2 running (a epoch 1/20, b epoch 7/20)" in text


def test_a_long_epoch_still_redraws_the_line(capsys: pytest.CaptureFixture) -> None:
    line = ProgressLine(total=1, epochs=5, defaults={})
    trials = [_trial("slow", "RUNNING", None)]
    line.on_step_end(1, trials)
    assert capsys.readouterr().out == ""  # just drawn at start: nothing new yet
    line._last_shown = time.monotonic() - max(REFRESH_S.values())  # as if the refresh period had passed
    line.on_step_end(2, trials)
    assert "1 running (slow epoch 1/5)" in capsys.readouterr().out

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


def test_a_refit_shows_each_finished_refits_test_accuracy_not_its_validation_score() -> None:
    line = ProgressLine(total=3, epochs=18, defaults={}, refit=True)
    done = _trial("r0", "TERMINATED", 18)
    done.last_result.update(val_acc=1.0, best_val_acc=1.0, test_acc=0.7125)
    running = _trial("r1", "RUNNING", 4)
    line.on_trial_result(1, [done, running], done, done.last_result)
    text = line.render([done, running, _trial("r2", "PENDING", None)])
    assert "test_acc 0.7125" in text and "val_acc" not in text
    assert "trials 1/3 done" in text and "1 running (r1 epoch 5/18)" in text

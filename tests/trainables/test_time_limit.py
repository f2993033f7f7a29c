"""When a trial stops for its time limit: before an epoch that would end past it, or at once when its
epochs project its end far past it, unless it is a prior."""

from __future__ import annotations

import pytest

from trainables.training import PROJECTED_PAST_LIMIT, out_of_time

LIMIT = 100.0


@pytest.mark.parametrize("run_to_limit", [False, True])
def test_a_next_epoch_that_would_end_past_the_limit_stops_every_trial(run_to_limit: bool) -> None:
    assert out_of_time(90.0, LIMIT, 11.0, 12.0, epochs_left=1, run_to_limit=run_to_limit)
    assert not out_of_time(90.0, LIMIT, 9.0, 9.5, epochs_left=1, run_to_limit=run_to_limit)


def test_a_trial_projected_far_past_the_limit_stops_unless_it_is_a_prior() -> None:
    # 25 s an epoch, 19 epochs left after the first: it would end at 500 s, five times the limit.
    assert out_of_time(25.0, LIMIT, 24.0, 25.0, epochs_left=19, run_to_limit=False)
    assert not out_of_time(25.0, LIMIT, 24.0, 25.0, epochs_left=19, run_to_limit=True)


def test_a_trial_projected_a_little_past_the_limit_runs_on_to_it() -> None:
    epoch = 6.0  # 20 epochs end at 120 s: past the limit, within PROJECTED_PAST_LIMIT of it
    assert 20 * epoch <= PROJECTED_PAST_LIMIT * LIMIT
    assert not out_of_time(epoch, LIMIT, epoch - 0.5, epoch, epochs_left=19, run_to_limit=False)


def test_the_last_epoch_never_stops_a_trial_for_time() -> None:
    assert not out_of_time(LIMIT * 2, LIMIT, 50.0, 50.0, epochs_left=0, run_to_limit=False)

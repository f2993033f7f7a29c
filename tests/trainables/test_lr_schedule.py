"""The learning-rate schedule: annealed by default for new sweeps, constant for experiments made
before it and for the study's replication."""

from __future__ import annotations

from pathlib import Path

import pytest

from scenetune.registry import get_task
from scenetune.replicate import ReplicateRequest, step_request
from scenetune.replication_steps import STEPS
from trainables.specs import LR_SCHEDULES, check_training_config
from trainables.training import scheduled_lr

EPOCHS = 20


def _rates(schedule: str | None, epochs: int = EPOCHS) -> list[float]:
    config = {"lr": 0.01, "epochs": epochs} | ({"lr_schedule": schedule} if schedule else {})
    return [scheduled_lr(config, epoch) for epoch in range(1, epochs + 1)]


@pytest.mark.parametrize("schedule", ["constant", None])
def test_a_constant_schedule_and_a_config_without_one_keep_the_rate(schedule: str | None) -> None:
    assert _rates(schedule) == [0.01] * EPOCHS


def test_cosine_starts_at_the_rate_halves_midway_and_ends_near_zero() -> None:
    rates = _rates("cosine")
    assert rates[0] == 0.01
    assert all(later < earlier for earlier, later in zip(rates, rates[1:], strict=False))
    assert rates[EPOCHS // 2] == pytest.approx(0.005)
    assert rates[-1] < 0.01 * 0.01


def test_a_single_epoch_trains_at_the_full_rate() -> None:
    assert _rates("cosine", epochs=1) == [0.01]


def test_an_unknown_schedule_is_refused_by_name_before_training() -> None:
    with pytest.raises(ValueError, match="lr_schedule must be one of .*'step'"):
        check_training_config({"lr_schedule": "step"})
    with pytest.raises(ValueError, match="lr_schedule"):
        scheduled_lr({"lr": 0.01, "epochs": 2, "lr_schedule": "step"}, 1)


@pytest.mark.parametrize("task", ["mlp", "patch_mlp", "cnn"])
def test_every_network_task_anneals_by_default(task: str) -> None:
    defaults = get_task(task).space.defaults
    assert defaults["lr_schedule"] == "cosine" and defaults["lr_schedule"] in LR_SCHEDULES


@pytest.mark.parametrize("step", [s for s in STEPS if s.task in ("mlp", "patch_mlp")], ids=lambda s: s.name)
def test_the_replication_trains_at_the_studys_constant_rate(step, tmp_path: Path) -> None:
    chosen = {s.name: dict(get_task(s.task).space.defaults) for s in STEPS}
    request = step_request(step, ReplicateRequest(storage=str(tmp_path)), tmp_path, chosen, resume=False)
    assert request.pinned["lr_schedule"] == "constant"

"""--refit: the best configuration trained again with seeds, as Ray Tune trials inside the experiment."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from analysis.uncertainty import correct_on_test, refit_summary
from scenetune.cli import main
from scenetune.experiment import (
    DEFAULT_OBJECTIVE,
    REFIT_DIR,
    Objective,
    TrialRecord,
    best_trial,
    load_trials,
    read_experiment_record,
)
from scenetune.refit import (
    noisy_best_epoch_note,
    refit_configs,
    refit_epochs,
    refit_seconds_each,
    training_growth,
)
from tests.processes import kill_once

TINY = ["--set", "image_size=8", "--set", "width=32"]
REFIT_KEYS = {"seed", "epochs", "refit", "refit_train_on", "max_trial_seconds"}


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["mlp", "--refit", "-1"], "--refit must be 0 or more seeds, got -1"),
        (["mlp", "--refit", "2", "--storage", "s3://bucket/x"], "--refit needs a local --storage folder"),
    ],
)
def test_bad_refit_requests(arguments: list[str], message: str, tmp_path: Path, capsys) -> None:
    assert main(["sweep", "--storage", str(tmp_path), *arguments]) == 2
    assert message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_a_refit_of_a_search_without_a_finished_trial_says_so_and_keeps_the_search(
    tmp_path: Path, ray_session, capsys
) -> None:
    # A layer of 10^12 units cannot be allocated: the only trial errors, as an out-of-memory trial does.
    impossible = ["--set", "image_size=8", "--set", "width=1000000000000", "--max-failures", "0"]
    arguments = ["sweep", "mlp", "--samples", "1", "--epochs", "1", *impossible, "--refit", "2"]
    assert main([*arguments, "--storage", str(tmp_path), "--name", "failed"]) == 2
    assert "has no finished trial with a checkpoint" in capsys.readouterr().err
    assert len(load_trials(tmp_path / "failed")) == 1  # the search that ran is kept
    assert not (tmp_path / "failed" / REFIT_DIR).exists()


def test_a_refit_after_a_budget_that_ended_before_any_trial_finished_says_so(
    tmp_path: Path, ray_session, capsys
) -> None:
    # A network of ~100M weights cannot finish an epoch in the 2 s budget (its worker alone starts slower).
    slow = ["--set", "image_size=64", "--set", "width=8192", "--max-trial-seconds", "1000"]
    arguments = [
        "sweep",
        "mlp",
        "--samples",
        "2",
        "--epochs",
        "1",
        *slow,
        "--time-budget",
        "2",
        "--refit",
        "2",
    ]
    assert main([*arguments, "--storage", str(tmp_path), "--name", "short"]) == 2
    assert (
        "cannot refit: the time budget of 2 s ended the sweep before any trial finished; "
        "give it a larger --time-budget" in capsys.readouterr().err
    )
    assert not (tmp_path / "short" / REFIT_DIR).exists()


@pytest.mark.integration
def test_an_interrupted_refit_resumes_keeps_what_it_trained_and_trains_the_best_config_with_new_seeds(
    tmp_path: Path,
) -> None:
    command = [
        sys.executable,
        "-m",
        "scenetune",
        "sweep",
        "mlp",
        "--samples",
        "1",
        "--epochs",
        "3",
        "--refit",
        "3",
        "--max-concurrent",
        "1",
        "--set",
        "image_size=16",
        "--set",
        "width=256",
        "--storage",
        str(tmp_path),
        "--name",
        "r",
    ]
    refit_dir = tmp_path / "r" / REFIT_DIR
    kill_once(
        command,
        lambda: any(t.last.get("epoch") == t.config.get("epochs") for t in load_trials(refit_dir)),
        "a refit trial finished",
    )
    finished = {
        t.trial_id: t.history for t in load_trials(refit_dir) if t.last.get("epoch") == t.config.get("epochs")
    }
    resumed = subprocess.run(
        [
            sys.executable,
            "-m",
            "scenetune",
            "sweep",
            "mlp",
            "--storage",
            str(tmp_path),
            "--name",
            "r",
            "--resume",
        ],
        capture_output=True,
        text=True,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "refit: 3 seeds" in resumed.stdout
    refits = load_trials(refit_dir)
    assert len(refits) == 3 and all(t.last["epoch"] == t.config["epochs"] for t in refits)
    for trial in refits:  # what was trained before the kill was kept, not trained again (a resumed
        # trial may report its checkpoint's epochs once more, as the worker that trained them did)
        if trial.trial_id in finished:
            assert what_was_trained(trial.history) == what_was_trained(finished[trial.trial_id])
    # Each refit is the best configuration with its own seed, for the best epoch count, on train + val.
    best = best_trial(tmp_path / "r")
    validation_images = read_experiment_record(tmp_path / "r")["data"]["sizes"]["val"]
    assert len({t.config["seed"] for t in refits}) == 3
    for refit in refits:
        assert {k: v for k, v in refit.config.items() if k not in REFIT_KEYS} == {
            k: v for k, v in best.config.items() if k not in REFIT_KEYS
        }
        assert (
            refit.config["epochs"] == refit_epochs(best, DEFAULT_OBJECTIVE, validation_images)
            and refit.config["refit_train_on"] == "train+val"
        )
        assert [r["epoch"] for r in refit.history] == list(range(1, refit.config["epochs"] + 1))
        assert correct_on_test(refit.checkpoints()[-1]).mean() == pytest.approx(
            refit.last["test_acc"]
        )  # final weights
    summary = refit_summary(tmp_path / "r")
    assert summary.mean == pytest.approx(sum(t.last["test_acc"] for t in refits) / 3)
    assert summary.low <= summary.mean <= summary.high and len(summary.correct) == 450
    # With the test folder as validation (the study's protocol), the refit must not train on it.
    assert {c["refit_train_on"] for c in refit_configs(best, 2, 0, on_validation=False, epochs=3)} == {
        "train"
    }


def what_was_trained(history: list[dict]) -> list[tuple]:
    """Each epoch with its clock and its scores: a rerun would change the clock."""
    return [(r["epoch"], r["trial_seconds"], r["train_samples_per_s"], r["test_acc"]) for r in history]


def trained(scores: list[float], metric: str = "val_acc", planned: int | None = None) -> TrialRecord:
    history = [{"epoch": e, metric: v} for e, v in enumerate(scores, 1)]
    return TrialRecord(Path("t"), {"epochs": planned or len(scores)}, history)


@pytest.mark.parametrize(
    ("scores", "objective", "epochs"),
    [
        # MIT_split's defaults MLP, seed 0: epoch 4 beat epoch 5 by 4 of 282 images, well within the noise.
        ([0.433, 0.461, 0.489, 0.521, 0.507], DEFAULT_OBJECTIVE, 5),
        ([0.40, 0.62, 0.55, 0.50], DEFAULT_OBJECTIVE, 2),  # later epochs fell by more than the noise
        ([0.40, 0.62, 0.61, 0.50], DEFAULT_OBJECTIVE, 3),
        ([0.9, 0.5, 0.6, 0.8], Objective("val_loss", "min"), 2),  # no binomial noise for a loss: its best
    ],
)
def test_the_refit_trains_for_the_most_epochs_within_the_validation_noise_of_the_best(
    scores: list[float], objective: Objective, epochs: int
) -> None:
    assert refit_epochs(trained(scores, objective.metric), objective, 282) == epochs
    assert refit_epochs(trained(scores, objective.metric), objective, None) == int(
        trained(scores, objective.metric).best_report(objective)["epoch"]
    )


def test_a_best_trial_cut_short_while_at_its_best_is_refit_for_the_planned_epochs() -> None:
    # Stopped at its time limit after 4 of 5 epochs, its last epoch 3 images below its best.
    assert refit_epochs(trained([0.511, 0.543, 0.582, 0.571], planned=5), DEFAULT_OBJECTIVE, 282) == 5
    # 9 images below (more than one standard error, 8.3 images at 0.58): the best epoch count stands.
    assert refit_epochs(trained([0.511, 0.543, 0.582, 0.55], planned=5), DEFAULT_OBJECTIVE, 282) == 3
    # Cut short after it had clearly fallen from its best: the best epoch count stands.
    assert refit_epochs(trained([0.40, 0.62, 0.55], planned=5), DEFAULT_OBJECTIVE, 282) == 2
    assert refit_epochs(trained([0.9, 0.5], "val_loss", planned=5), Objective("val_loss", "min"), 282) == 5


def test_the_refit_line_says_why_it_trains_past_the_best_epoch(tmp_path: Path) -> None:
    noisy = TrialRecord(tmp_path / "t", {"epochs": 5}, trained([0.433, 0.461, 0.489, 0.521, 0.507]).history)
    assert (
        noisy_best_epoch_note(noisy, 5, DEFAULT_OBJECTIVE)
        == " (its best epoch was 4; epoch 5 scored within the validation split's noise)"
    )
    cut = TrialRecord(tmp_path / "t", {"epochs": 5}, trained([0.457, 0.535]).history)
    assert (
        noisy_best_epoch_note(cut, 5, DEFAULT_OBJECTIVE)
        == " (the best trial was cut short after epoch 2 while still at its best; 5 were planned)"
    )
    assert noisy_best_epoch_note(cut, 2, DEFAULT_OBJECTIVE) == ""


def test_a_refit_is_timed_at_the_best_trials_pace_on_its_larger_training_set(tmp_path: Path) -> None:
    # 3 epochs in 30 s (start-up included): 10 s an epoch; a refit of 5 epochs on 1.25x the images.
    history = [{"epoch": e, "val_acc": 0.5, "trial_seconds": 12.0 + 9 * (e - 1)} for e in (1, 2, 3)]
    best = TrialRecord(tmp_path / "t", {"epochs": 5}, history)
    assert refit_seconds_each(best, 5, 1.25) == pytest.approx(30.0 / 3 * 5 * 1.25)
    assert refit_seconds_each(trained([0.5, 0.6]), 5, 1.0) is None  # a trial that reported no time
    # Resumed after epoch 2: the second attempt's clock starts at the resume, 2 epochs in 16 s.
    resumed = [{**r, "attempt": 1} for r in history[:2]] + [
        {"epoch": e, "val_acc": 0.5, "trial_seconds": 8.0 * (e - 2), "attempt": 2} for e in (3, 4)
    ]
    assert refit_seconds_each(TrialRecord(tmp_path / "t", {"epochs": 5}, resumed), 5, 1.0) == pytest.approx(
        40.0
    )
    assert training_growth({"train": 1599, "val": 282}, on_validation=True) == pytest.approx(1881 / 1599)
    assert training_growth({"train": 1599, "val": 807}, on_validation=False) == 1.0  # --val test
    assert training_growth({}, on_validation=True) == 1.0  # an experiment recorded without its sizes

"""The samplers `--sampler` names, on Optuna studies of their own (no Ray, no training)."""

from __future__ import annotations

import numpy as np
import optuna
import pytest

from scenetune.sweep import COLD_START_RANDOM_TRIALS, RANDOM_TRIALS_AFTER_PRIORS, make_sampler, random_start

BEST_X = 0.9
PRIORS = [0.85, 0.95]  # known-good points on either side of the best
TRIALS = 12


def distance_after_random_start(kind: str, seed: int, sampler_priors: int) -> float:
    """Mean distance to the best point of the trials that follow the priors and a short random start."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=make_sampler(kind, seed, sampler_priors))
    for x in PRIORS:
        study.enqueue_trial({"x": x})
    study.optimize(lambda trial: -abs(trial.suggest_float("x", 0.0, 1.0) - BEST_X), n_trials=TRIALS)
    chosen = [trial.params["x"] for trial in study.trials[len(PRIORS) + RANDOM_TRIALS_AFTER_PRIORS :]]
    return float(np.mean(np.abs(np.array(chosen) - BEST_X)))


def test_after_the_priors_the_gp_sampler_searches_near_the_best_within_a_few_trials() -> None:
    # Uniform draws lie 0.41 from 0.9 on average; a cold start (Optuna's 10 random trials) is still
    # drawing at random where the informed one has begun to model the space.
    informed = np.mean([distance_after_random_start("gp", seed, len(PRIORS)) for seed in range(3)])
    cold = np.mean([distance_after_random_start("gp", seed, 0) for seed in range(3)])
    assert informed < 0.2 < cold


@pytest.mark.parametrize("kind", ["tpe", "gp", "random"])
def test_each_sampler_replays_its_suggestions_for_a_seed(kind: str) -> None:
    def suggestions(seed: int) -> list[float]:
        study = optuna.create_study(direction="maximize", sampler=make_sampler(kind, seed, len(PRIORS)))
        for x in PRIORS:
            study.enqueue_trial({"x": x})
        study.optimize(lambda trial: -abs(trial.suggest_float("x", 0.0, 1.0) - BEST_X), n_trials=8)
        return [trial.params["x"] for trial in study.trials]

    assert suggestions(3) == suggestions(3) != suggestions(4)


def _suggested(sampler_priors: int, trials: int, stopped_early: bool = True) -> list[float]:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = make_sampler("tpe", 0, sampler_priors, stopped_early=stopped_early)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    for x in PRIORS:
        study.enqueue_trial({"x": x})
    study.optimize(lambda trial: -abs(trial.suggest_float("x", 0.0, 1.0) - BEST_X), n_trials=trials)
    return [trial.params["x"] for trial in study.trials]


def test_after_the_priors_tpe_draws_4_trials_at_random_then_models_the_space() -> None:
    """The priors are results already: TPE models them with a few random trials beside them rather
    than drawing Optuna's usual 10 at random first (measurement 4 in BENCHMARKS.md). A cold start
    keeps its 10: with the same seed, both draw the same random trials until the informed one models."""
    start = len(PRIORS) + RANDOM_TRIALS_AFTER_PRIORS
    informed, cold = _suggested(len(PRIORS), start + 1), _suggested(0, start + 1)
    assert informed[:start] == cold[:start]  # the priors, then the same random draws
    assert informed[start] != cold[start]  # the informed search's first modelled trial


def test_where_asha_cannot_stop_a_trial_tpe_draws_10_trials_at_random_the_priors_among_them() -> None:
    """A trial of one step (an SVM fit) costs its whole run wherever TPE's early model sends it;
    such searches keep Optuna's 10 random trials, as a cold start does (measurement 7 in
    BENCHMARKS.md), while a network search models after the priors and 4."""
    trials = COLD_START_RANDOM_TRIALS + 1
    one_step = _suggested(len(PRIORS), trials, stopped_early=False)
    assert one_step == _suggested(0, trials)  # the same random draws, then the same first model
    informed_start = len(PRIORS) + RANDOM_TRIALS_AFTER_PRIORS
    assert one_step[informed_start] != _suggested(len(PRIORS), trials)[informed_start]


def test_a_random_start_is_never_shorter_than_the_priors_and_4_random_trials() -> None:
    assert (
        random_start(0, stopped_early=True)
        == random_start(0, stopped_early=False)
        == COLD_START_RANDOM_TRIALS
    )
    assert random_start(2, stopped_early=True) == 2 + RANDOM_TRIALS_AFTER_PRIORS
    assert random_start(2, stopped_early=False) == COLD_START_RANDOM_TRIALS
    assert random_start(8, stopped_early=False) == 8 + RANDOM_TRIALS_AFTER_PRIORS

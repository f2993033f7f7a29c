"""ASHA fitted to short, budgeted searches that start from known-good configurations.

Ray's ASHA stops a trial at a rung when it falls below the rung's top 1/reduction_factor of the
results recorded so far. Two things make that harsh when a search holds a handful of trials:

- with one recorded result the cut-off is that result, so the second trial to reach a rung is
  stopped whenever it starts slower than the first; a rung here judges only once it holds
  `bootstrap` results (Optuna's SuccessiveHalvingPruner has the same rule, `bootstrap_count`);
- the priors (the task's defaults, the study's best models) start fast and are tried first, so
  they would set every cut-off and stop the slow-starting configurations (low learning rates,
  larger inputs) that end better. Priors are the bar the search has to clear at its end, not its
  judges at epoch 1: they run to the end and their results are not recorded in the rungs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ray.tune.schedulers import AsyncHyperBandScheduler, TrialScheduler
from ray.tune.schedulers.async_hyperband import _Bracket


class _BootstrappedBracket(_Bracket):
    """A bracket whose rungs stop nothing until they hold `bootstrap` results."""

    def __init__(self, *args: Any, bootstrap: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.bootstrap = bootstrap

    def cutoff(self, recorded: dict) -> Any:
        if len(recorded) < self.bootstrap:
            return None
        return super().cutoff(recorded)


def is_prior(config: Mapping[str, Any], priors: Sequence[Mapping[str, Any]]) -> bool:
    """Whether a trial's configuration is one of the prior points (it carries their parameters)."""
    return any(all(config.get(key) == value for key, value in point.items()) for point in priors)


class PriorAwareASHA(AsyncHyperBandScheduler):
    """ASHA over the search's own trials: priors run to the end unjudged, rungs judge once full enough."""

    def __init__(
        self,
        *,
        priors: Sequence[Mapping[str, Any]] = (),
        bootstrap: int | None = None,
        grace_period: int = 1,
        max_t: int = 100,
        reduction_factor: float = 3,
        **kwargs: Any,
    ) -> None:
        super().__init__(grace_period=grace_period, max_t=max_t, reduction_factor=reduction_factor, **kwargs)
        self._priors = [dict(point) for point in priors]
        self._prior_ids: set[str] = set()
        bootstrap = int(reduction_factor) if bootstrap is None else bootstrap
        self._brackets = [
            _BootstrappedBracket(
                grace_period,
                max_t,
                reduction_factor,
                s,
                stop_last_trials=self._stop_last_trials,
                bootstrap=bootstrap,
            )
            for s in range(len(self._brackets))
        ]

    def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
        super().on_trial_add(tune_controller, trial)
        if is_prior(trial.config, self._priors):
            self._prior_ids.add(trial.trial_id)

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        if trial.trial_id not in self._prior_ids:
            return super().on_trial_result(tune_controller, trial, result)
        done = result.get(self._time_attr, 0) >= self._max_t
        return TrialScheduler.STOP if done and self._stop_last_trials else TrialScheduler.CONTINUE

    def on_trial_complete(self, tune_controller: Any, trial: Any, result: dict) -> None:
        if trial.trial_id in self._prior_ids:
            self._trial_info.pop(trial.trial_id, None)
            return
        super().on_trial_complete(tune_controller, trial, result)

"""ASHA fitted to short, budgeted searches that start from known-good configurations.

Ray's ASHA stops a trial at a rung when it falls below the rung's top 1/reduction_factor of the
results recorded so far. Two things make that harsh when a search holds a handful of trials:

- with one recorded result the cut-off is that result, so the second trial to reach a rung is
  stopped whenever it starts slower than the first; a rung here judges by quantile only once it
  holds `bootstrap` results (Optuna's SuccessiveHalvingPruner has the same rule, `bootstrap_count`);
- the priors (the task's defaults, the study's best models) start fast and are tried first, so
  they would set every cut-off and stop the slow-starting configurations (low learning rates,
  larger inputs) that end better. Priors are the bar the search has to clear at its end, not its
  judges at epoch 1: they run to the end and their results are not recorded in the rungs.

Left at that, a rung still short of `bootstrap` results stops nothing, and one holding only broken
trials keeps the next broken one: the first trials a search draws at random ran to the last epoch
however bad (measurement 4: 12 of its first 30 trial-epochs went on three trials at 18-27%
validation accuracy while the priors stood at 46-48% after one epoch). So a rung also stops a trial
that lies more than one standard error of a validation score below every prior's result there: a
floor that a slow starter clears (the trials that ended within 3 points of a search's best started
at most 0.03 below the worse prior) and a broken configuration does not.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from ray.tune.schedulers import AsyncHyperBandScheduler, TrialScheduler
from ray.tune.schedulers.async_hyperband import _Bracket

from scenetune.experiment import accuracy_standard_error


class _BootstrappedBracket(_Bracket):
    """A bracket whose rungs judge by quantile once they hold `bootstrap` results, and stop at any
    time a trial more than one standard error below every prior's result at the rung."""

    def __init__(self, *args: Any, bootstrap: int, scored_images: int | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.bootstrap = bootstrap
        self.scored_images = scored_images

    def record_prior(self, trial_id: str, cur_iter: float, reward: float) -> None:
        """A prior's result at the highest rung it has reached, kept apart from the rung's own results."""
        results = self._prior_results()
        for milestone, _ in self._rungs:  # highest rung first
            if cur_iter >= milestone and trial_id not in results[milestone]:
                if math.isfinite(reward):
                    results[milestone][trial_id] = reward
                return

    def cutoff(self, recorded: dict) -> Any:
        quantile = super().cutoff(recorded) if len(recorded) >= self.bootstrap else None
        cutoffs = [c for c in (quantile, self._prior_floor(recorded)) if c is not None]
        return max(cutoffs) if cutoffs else None

    def _prior_floor(self, recorded: dict) -> float | None:
        if not getattr(self, "scored_images", None):  # none given, or a bracket pickled before the floor
            return None
        milestone = next(milestone for milestone, rung in self._rungs if rung is recorded)
        priors = self._prior_results()[milestone]
        if not priors:
            return None
        worst = min(priors.values())
        return worst - accuracy_standard_error(min(max(worst, 0.0), 1.0), self.scored_images)

    def _prior_results(self) -> dict[float, dict[str, float]]:
        """The priors' results by rung milestone. Made on first use: a bracket pickled with a sweep
        from before the floor has none."""
        if not hasattr(self, "prior_results"):
            self.prior_results: dict[float, dict[str, float]] = {
                milestone: {} for milestone, _ in self._rungs
            }
        return self.prior_results


def is_prior(config: Mapping[str, Any], priors: Sequence[Mapping[str, Any]]) -> bool:
    """Whether a trial's configuration is one of the prior points (it carries their parameters)."""
    return any(all(config.get(key) == value for key, value in point.items()) for point in priors)


class PriorAwareASHA(AsyncHyperBandScheduler):
    """ASHA over the search's own trials: priors run to the end unjudged, rungs judge once full enough
    and, before that, against a floor under the priors. `scored_images`: how many images a trial's
    metric (an accuracy, maximised) is scored on; without it there is no floor."""

    def __init__(
        self,
        *,
        priors: Sequence[Mapping[str, Any]] = (),
        bootstrap: int | None = None,
        scored_images: int | None = None,
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
                scored_images=scored_images,
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
        if self._time_attr in result and self._metric in result:
            bracket = self._trial_info[trial.trial_id]
            bracket.record_prior(
                trial.trial_id, result[self._time_attr], self._metric_op * result[self._metric]
            )
        done = result.get(self._time_attr, 0) >= self._max_t
        return TrialScheduler.STOP if done and self._stop_last_trials else TrialScheduler.CONTINUE

    def on_trial_complete(self, tune_controller: Any, trial: Any, result: dict) -> None:
        if trial.trial_id in self._prior_ids:
            self._trial_info.pop(trial.trial_id, None)
            return
        super().on_trial_complete(tune_controller, trial, result)

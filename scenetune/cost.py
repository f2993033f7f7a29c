"""Cost-aware trials: a configuration whose first result cannot come within `--max-trial-seconds` is
pruned before it starts, and the searcher is told so, so that TPE learns to avoid that region.

Each task says what its trials must finish before their first result, and how much work that is
(`Task.first_result_work`):
- a network's first epoch: its work per sample (forward FLOPs, counted by torch on the meta device:
  twice the parameter count for an MLP, times the patches for a patch MLP) times the training
  samples, measured by each epoch's `train_samples_per_s`;
- a BoVW trial's codebook fit (trainables.bovw.CodebookFitWork), measured by `codebook_fit_seconds`.
The estimate multiplies that work by the fastest rate (seconds per unit of work) this sweep has
measured so far, so that it is a lower bound: a configuration is pruned only when even that bound
runs past the limit. Before any trial has reported, nothing is pruned; trials that do run are still
stopped at their limit (`too_slow`), or as soon as their epochs project their end well past it
(priors excepted).
"""

from __future__ import annotations

import copy
import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ray.tune.search import Searcher

from scenetune.experiment import RUN_TO_LIMIT
from scenetune.scheduler import is_prior

logger = logging.getLogger(__name__)

# After this many pruned suggestions in a row the next one runs anyway (its time limit still holds):
# a searcher that only proposes the infeasible must not stall the sweep.
MAX_PRUNED_IN_A_ROW = 25


@dataclass(frozen=True)
class WorkEstimate:
    """Forward FLOPs per sample of the network a configuration trains (None: the task trains none)."""

    task_name: str
    n_classes: int

    def __call__(self, config: dict[str, Any]) -> float | None:
        import torch
        from torch.utils.flop_counter import FlopCounterMode

        from scenetune.registry import get_task

        with torch.device("meta"):
            network = get_task(self.task_name).network_for(config, self.n_classes)
            if network is None:
                return None
            side = int(config["image_size"])
            with FlopCounterMode(display=False) as counter:
                network(torch.zeros(1, side, side, 3))
        return float(counter.get_total_flops()) or None


class FirstResultWork(Protocol):
    """What a task's trials must finish before their first result: its work for a configuration (in
    the task's own unit; None: not estimated) and the seconds it took, read from a trial's result."""

    what: str  # what that part is, for the sweep's summary ("first epoch", "codebook fit")

    def work(self, config: dict[str, Any]) -> float | None: ...

    def seconds(self, result: dict[str, Any]) -> float | None: ...


@dataclass(frozen=True)
class NetworkEpochWork:
    """A network task's first epoch: its forward FLOPs per sample times the training samples."""

    per_sample: WorkEstimate
    train_samples: int
    what: str = "first epoch"

    def work(self, config: dict[str, Any]) -> float | None:
        per_sample = self.per_sample(config)
        return per_sample * self.train_samples if per_sample is not None else None

    def seconds(self, result: dict[str, Any]) -> float | None:
        samples_per_second = result.get("train_samples_per_s")
        return self.train_samples / samples_per_second if samples_per_second else None


@dataclass
class MeasuredRate:
    """The fastest seconds per unit of work this sweep has measured."""

    seconds_per_work: float | None = None

    def measured(self, work: float, seconds: float) -> None:
        if work > 0 and seconds > 0:
            rate = seconds / work
            self.seconds_per_work = min(rate, self.seconds_per_work or rate)

    def estimate(self, work: float | None) -> float | None:
        if work is None or self.seconds_per_work is None:
            return None
        return work * self.seconds_per_work


@dataclass
class EpochCost:
    """The calibration a sweep saved before `FirstResultWork` (kept so that such a sweep resumes)."""

    train_samples: int
    seconds_per_work: float | None = None


def _current_state(state: dict[str, Any]) -> dict[str, Any]:
    """A saved CostAwareSearch state in today's form. An older one calibrated per sample by the same
    rate (1 / (samples per second x work per sample)); its live trials' work, per sample, is dropped."""
    legacy = state.get("cost")
    if not isinstance(legacy, EpochCost):
        return state
    kept = {key: value for key, value in state.items() if key not in ("cost", "train_samples", "work")}
    return {
        **kept,
        "work_of": NetworkEpochWork(state["work_of"], legacy.train_samples),
        "rate": MeasuredRate(legacy.seconds_per_work),
        "work": {},
    }


class CostAwareSearch(Searcher):
    """Wraps a searcher: each suggestion whose estimated first result comes later than `limit_s` is
    reported to the wrapped searcher as a worst-score trial and replaced by the next suggestion. A
    prior's configuration is marked to run to its limit (trainables.training.out_of_time)."""

    def __init__(
        self,
        searcher: Searcher,
        work_of: FirstResultWork,
        limit_s: float,
        worst_result: dict[str, Any],
        pruned_log: Path | None = None,
        priors: Sequence[Mapping[str, Any]] = (),
    ) -> None:
        self.searcher = searcher
        self.priors = [dict(point) for point in priors]
        self.work_of = work_of
        self.rate = MeasuredRate()
        self.limit_s = float(limit_s)
        self.worst_result = worst_result
        self.pruned_log = pruned_log
        self.work: dict[str, float | None] = {}  # per live trial id
        # The wrapped searcher knows an accepted suggestion by the id of the attempt that made it.
        self.inner_ids: dict[str, str] = {}
        self.pruned = 0
        super().__init__(metric=searcher.metric, mode=searcher.mode)

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec: Any) -> bool:
        return self.searcher.set_search_properties(metric, mode, config, **spec)

    def set_max_concurrency(self, max_concurrent: int) -> bool:
        return self.searcher.set_max_concurrency(max_concurrent)

    def suggest(self, trial_id: str) -> dict | None:
        for attempt in range(MAX_PRUNED_IN_A_ROW + 1):
            inner_id = trial_id if attempt == 0 else f"{trial_id}-pruned{attempt}"
            config = self.searcher.suggest(inner_id)
            if config in (None, Searcher.FINISHED) or not isinstance(config, dict):
                return config
            work = self._work(config)
            estimate = self.rate.estimate(work)
            if estimate is None or estimate <= self.limit_s or attempt == MAX_PRUNED_IN_A_ROW:
                self.inner_ids[trial_id] = inner_id
                self.work[trial_id] = work
                return {**config, RUN_TO_LIMIT: True} if is_prior(config, self.priors) else config
            self._prune(inner_id, config, estimate)
        return None  # unreachable: the last attempt always returns

    def _work(self, config: dict[str, Any]) -> float | None:
        try:
            return self.work_of.work(config)
        except Exception as error:  # an estimate must never stop a sweep; the trial's limit still holds
            logger.debug("no cost estimate for %s: %s", config, error)
            return None

    def _prune(self, inner_id: str, config: dict[str, Any], estimate: float) -> None:
        self.searcher.on_trial_complete(inner_id, result=dict(self.worst_result))
        self.pruned += 1
        if self.pruned_log is not None:
            entry = {
                "time": time.time(),
                "config": config,
                "estimated_epoch_seconds": estimate,
                "estimated_part": self.work_of.what,
                "max_trial_seconds": self.limit_s,
            }
            with self.pruned_log.open("a") as log:
                log.write(json.dumps(entry, default=str) + "\n")

    def _measure(self, trial_id: str, result: dict) -> None:
        work, seconds = self.work.get(trial_id), self.work_of.seconds(result)
        if work and seconds:
            self.rate.measured(work, float(seconds))

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        self._measure(trial_id, result)
        self.searcher.on_trial_result(self.inner_ids.get(trial_id, trial_id), result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        # A trial's last result comes here alone when the scheduler stops the trial at it: a one-step
        # trial's (bovw) only result, a network's last epoch.
        if result:
            self._measure(trial_id, result)
        self.work.pop(trial_id, None)
        self.searcher.on_trial_complete(self.inner_ids.pop(trial_id, trial_id), result=result, error=error)

    def add_evaluated_point(self, *args: Any, **kwargs: Any) -> None:
        self.searcher.add_evaluated_point(*args, **kwargs)

    def get_state(self) -> dict[str, Any]:
        """What Tune saves of this wrapper with the experiment (the wrapped searcher saves its own)."""
        state = self.__dict__.copy()
        del state["searcher"]
        return copy.deepcopy(state)

    def set_state(self, state: dict[str, Any]) -> None:
        self.__dict__.update(_current_state(state))

    def save(self, checkpoint_path: str) -> None:
        self.searcher.save(checkpoint_path)

    def restore(self, checkpoint_path: str) -> None:
        self.searcher.restore(checkpoint_path)

"""What a task's search space is: defaults, an Optuna define-by-run space, and the study's presets.

Pure Python (no torch): the driver imports it to validate arguments before anything starts.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

OPTUNA_SPACE = "optuna"


class Pick:
    """Hands a define-by-run space its values: Optuna suggests, unless the user pinned the name (--set)."""

    def __init__(self, trial: Any, pinned: dict[str, Any], context: dict[str, Any] | None = None):
        self.trial = trial
        self.pinned = pinned
        self.context = context or {}  # facts about the sweep's inputs, e.g. the layers a source model has

    def float(self, name: str, low: float, high: float, log: bool = False) -> float:
        if name in self.pinned:
            return self.pinned[name]
        return self.trial.suggest_float(name, low, high, log=log)

    def int(self, name: str, low: int, high: int, log: bool = False) -> int:
        if name in self.pinned:
            return self.pinned[name]
        return self.trial.suggest_int(name, low, high, log=log)

    def categorical(self, name: str, choices: Sequence[Any]) -> Any:
        if name in self.pinned:
            return self.pinned[name]
        return self.trial.suggest_categorical(name, list(choices))


def search_rbf_gamma(pick: Pick) -> None:
    """SVC's 'scale' gamma (1 / (n_features * variance of the features)), or a multiple of it: a
    range relative to 'scale' follows the features' scaling, where an absolute one suits one scaling
    and is orders of magnitude off for another ('scale' is 5e-4 for a 2048-unit layer standardised,
    1e-4 unscaled; about 1 for l2-normalised visual-word histograms, 20 to 160 for l1-normalised ones).
    Pinning gamma (--set gamma=...) searches neither."""
    if "gamma" in pick.pinned:
        return
    if not pick.categorical("gamma_scale", [True, False]):
        pick.float("gamma_factor", 1e-2, 1e2, log=True)


@dataclass(frozen=True)
class Preset:
    """One of the study's one-factor sweeps: a grid of overrides applied to the task's defaults."""

    name: str
    description: str
    # The grid, or a function of the sweep's context for grids that depend on its inputs.
    points: list[dict[str, Any]] | Callable[[dict[str, Any]], list[dict[str, Any]]]
    keep: Callable[[dict[str, Any]], bool] | None = None  # drops points that do not fit the pinned values
    swept: tuple[str, ...] = ()  # the varied parameters, where the grid depends on the context
    # The model every point starts from (e.g. model 1.4); unlike the points, pins override it, so
    # that a chain of sweeps can run the same factor on the model an earlier step chose.
    base: dict[str, Any] = field(default_factory=dict)

    def points_for(self, context: dict[str, Any]) -> list[dict[str, Any]]:
        return self.points(context) if callable(self.points) else self.points

    @property
    def factors(self) -> list[str]:
        """The parameters this preset varies."""
        if self.swept or callable(self.points):
            return sorted(self.swept)
        keys = {k for point in self.points for k in point}
        return sorted(k for k in keys if len({repr(p.get(k)) for p in self.points}) > 1)


@dataclass(frozen=True)
class TaskSpace:
    task: str
    description: str
    defaults: dict[str, Any]
    optuna_space: Callable[[Pick], dict[str, Any] | None]  # define-by-run body; returns extra constants
    presets: dict[str, Preset]
    optuna_description: str
    # Values the optuna space may choose for keys that shape the data the trials need (image_size):
    # a list, or a function of the sweep's context.
    optuna_choices: dict[str, Any] = field(default_factory=dict)
    # Known-good configurations (overrides of the defaults; {} is the defaults themselves) that a
    # search evaluates first, so that it starts from what the study already knows.
    priors: tuple[dict[str, Any], ...] = ({},)

    @property
    def space_names(self) -> list[str]:
        return [OPTUNA_SPACE, *self.presets]

    def preset_configs(
        self, preset: str, pinned: dict[str, Any], context: dict[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        """The full configuration of every grid point: defaults, the preset's base, pins, the point."""
        chosen = self.presets[preset]
        configs = [
            {**self.defaults, **chosen.base, **pinned, **point} for point in chosen.points_for(context or {})
        ]
        return [config for config in configs if chosen.keep is None or chosen.keep(config)]

    def define_by_run(
        self, pinned: dict[str, Any], constants: dict[str, Any], context: dict[str, Any] | None = None
    ) -> Callable[[Any], dict[str, Any]]:
        """A picklable define-by-run function for OptunaSearch (it is saved with the experiment)."""
        return functools.partial(
            _define_by_run, self.optuna_space, self.defaults, pinned, constants, context or {}
        )

    def possible_values(
        self, key: str, space: str, pinned: dict[str, Any], context: dict[str, Any] | None = None
    ) -> list[Any]:
        """Every value `key` can take in this space (the data is prepared for each of them)."""
        if key in pinned:
            return [pinned[key]]
        if space == OPTUNA_SPACE:
            choices = self.optuna_choices.get(key, [self.defaults[key]])
            return list(choices(context or {}) if callable(choices) else choices)
        return sorted({config[key] for config in self.preset_configs(space, pinned, context)})


class _Mismatch(Exception):
    """The configuration cannot come out of this branch of the space."""


class _Undecided(Exception):
    """The space asks for a categorical that the configuration does not name (a derived choice)."""

    def __init__(self, n_choices: int):
        self.n_choices = n_choices


class _ReplayTrial:
    """Answers a define-by-run space from a known configuration; choices the configuration does not
    name (use_dropout, patches_per_side, gamma_scale...) are taken from `decisions`, in order."""

    def __init__(self, config: dict[str, Any], decisions: list[int]):
        self.config, self.decisions, self.params = config, list(decisions), {}

    def _known(self, name: str, check: Callable[[Any], bool]) -> Any:
        value = self.config.get(name)
        if name not in self.config or not check(value):
            raise _Mismatch(name)
        self.params[name] = value
        return value

    def suggest_float(self, name: str, low: float, high: float, log: bool = False) -> float:
        return self._known(
            name, lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and low <= v <= high
        )

    def suggest_int(self, name: str, low: int, high: int, log: bool = False) -> int:
        return self._known(
            name, lambda v: isinstance(v, int) and not isinstance(v, bool) and low <= v <= high
        )

    def suggest_categorical(self, name: str, choices: list[Any]) -> Any:
        if name in self.config:
            return self._known(name, lambda v: any(v == c and type(v) is type(c) for c in choices))
        if not self.decisions:
            raise _Undecided(len(choices))
        self.params[name] = choices[self.decisions.pop(0)]
        return self.params[name]


def prior_points(
    space: TaskSpace, pinned: dict[str, Any], context: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    """The space's known-good configurations as the Optuna parameters that produce them, for
    OptunaSearch's points_to_evaluate. A prior the space cannot produce (outside its ranges, or
    against a pin) is left out."""
    points = []
    for prior in space.priors:
        config = {**space.defaults, **prior, **pinned}
        point = _replay(space, config, pinned, context or {})
        if point is not None and point not in points:
            points.append(point)
    return points


def _replay(
    space: TaskSpace, config: dict[str, Any], pinned: dict[str, Any], context: dict[str, Any]
) -> dict[str, Any] | None:
    """The parameters for which the space yields exactly `config`, found by trying the derived choices."""
    pending: list[list[int]] = [[]]
    while pending:
        decisions = pending.pop()
        trial = _ReplayTrial(config, decisions)
        try:
            produced = _define_by_run(space.optuna_space, space.defaults, pinned, {}, context, trial)
        except _Undecided as undecided:
            pending += [[*decisions, choice] for choice in range(undecided.n_choices)]
            continue
        except _Mismatch:
            continue
        produced = {**produced, **trial.params}  # as OptunaSearch merges them
        if all(produced.get(key) == value for key, value in config.items()):
            return trial.params
    return None


def _define_by_run(
    body: Callable[[Pick], dict[str, Any] | None],
    defaults: dict[str, Any],
    pinned: dict[str, Any],
    constants: dict[str, Any],
    context: dict[str, Any],
    trial: Any,
) -> dict[str, Any]:
    extra = body(Pick(trial, pinned, context)) or {}
    searched = set(trial.params)  # the parameters this trial suggested (an Optuna trial, or a replay)
    # Everything not suggested is a constant of the trial: defaults, pins, sweep-wide settings.
    fixed = {k: v for k, v in {**defaults, **pinned}.items() if k not in searched}
    return {**fixed, **extra, **constants}

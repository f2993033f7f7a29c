"""Hyperparameter importance with Optuna's own evaluators (fANOVA and PED-ANOVA), on an experiment's
trials rebuilt into an in-memory Optuna study."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
import pandas as pd
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from analysis.results import CONFIG_PREFIX, LOG_SCALE_RATIO, Experiment
from scenetune.experiment import RUN_KEYS, is_present

MIN_TRIALS = 4
EXCLUDED_PARAMS = RUN_KEYS


def _distribution(values: pd.Series) -> BaseDistribution:
    """The narrowest Optuna distribution that holds every observed value."""
    if pd.api.types.is_bool_dtype(values) or not pd.api.types.is_numeric_dtype(values):
        return CategoricalDistribution(sorted({_plain(v) for v in values}, key=str))
    low, high = float(values.min()), float(values.max())
    log = low > 0 and high / low > LOG_SCALE_RATIO
    if pd.api.types.is_integer_dtype(values):
        return IntDistribution(int(low), int(high), log=log)
    return FloatDistribution(low, high, log=log)


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def rebuild_study(experiment: Experiment) -> optuna.Study:
    """An Optuna study holding one finished trial per scored trial of the experiment."""
    objective = experiment.objective
    trials = experiment.scored_trials()
    params = [p for p in experiment.searched_params() if p not in EXCLUDED_PARAMS]
    direction = "maximize" if objective.mode == "max" else "minimize"
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # not "A new study created in memory" per figure
    study = optuna.create_study(direction=direction, study_name=experiment.name)
    if not params:
        return study
    columns = {p: trials[CONFIG_PREFIX + p] for p in params}
    distributions = {
        p: _distribution(column.dropna()) for p, column in columns.items() if column.notna().any()
    }
    for _, trial in trials.iterrows():
        values = {
            p: _plain(trial[CONFIG_PREFIX + p]) for p in distributions if is_present(trial[CONFIG_PREFIX + p])
        }
        study.add_trial(
            optuna.trial.create_trial(
                params=values,
                distributions={p: distributions[p] for p in values},
                value=float(trial[objective.metric]),
            )
        )
    return study


def importance_table(experiment: Experiment, seed: int = 0) -> pd.DataFrame:
    """Importance of each searched parameter for val_acc, one column per evaluator, sorted by fANOVA."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = rebuild_study(experiment)
    if len(study.trials) < MIN_TRIALS:
        raise ValueError(
            f"importance needs at least {MIN_TRIALS} scored trials; {experiment.path} has {len(study.trials)}"
        )
    if not study.trials[0].distributions and not any(t.params for t in study.trials):
        raise ValueError(f"{experiment.path} has no parameter that varies between trials")
    evaluators = {
        "fanova": optuna.importance.FanovaImportanceEvaluator(seed=seed),
        "ped_anova": optuna.importance.PedAnovaImportanceEvaluator(),
    }
    columns = {
        name: optuna.importance.get_param_importances(study, evaluator=evaluator)
        for name, evaluator in evaluators.items()
    }
    table = pd.DataFrame(columns).fillna(0.0)
    table.index.name = "parameter"
    return table.sort_values("fanova", ascending=False)


def importance_chart(table: pd.DataFrame, experiment: Experiment, out_dir: Path) -> list[Path]:
    from analysis.plots import plt, save_figure

    figure, axis = plt.subplots(figsize=(7, 0.45 * len(table) + 1.5))
    table[::-1].plot.barh(ax=axis)
    axis.set_xlabel("importance for val_acc")
    axis.set_title(f"{experiment.name}: hyperparameter importance")
    return save_figure(figure, out_dir, "hyperparameter_importance")

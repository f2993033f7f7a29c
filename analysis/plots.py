"""The study's figures from an experiment's files, with matplotlib: one PNG and one SVG per figure."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display

import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator
import numpy as np
import pandas as pd

from analysis.describe import short_value
from analysis.results import CONFIG_PREFIX, Experiment
from analysis.tables import swept_factors

MAX_LEGEND_ENTRIES = 12
LOG_SCALE_RATIO = 50  # numeric factors spanning more than this ratio get a log axis
STATUS_COLOURS = {"completed": "tab:green", "stopped_early": "tab:orange", "diverged": "tab:red", "error": "tab:red",
                  "infeasible": "tab:gray", "running": "tab:blue", "pending": "tab:gray", "interrupted": "tab:purple"}


def save_figure(figure: plt.Figure, out_dir: Path, name: str) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{name}.{suffix}" for suffix in ("png", "svg")]
    for path in paths:
        figure.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(figure)
    return paths


def _label(axis: plt.Axes, x: str, y: str, title: str) -> None:
    axis.set_xlabel(x)
    axis.set_ylabel(y)
    axis.grid(alpha=0.3)
    axis.legend()
    axis.set_title(title)


def _trial_labels(experiment: Experiment) -> dict[str, str]:
    factors = swept_factors(experiment)
    labels = {}
    for _, trial in experiment.trials.iterrows():
        if factors:
            labels[trial["trial_id"]] = " ".join(f"{f}={short_value(trial[CONFIG_PREFIX + f])}" for f in factors)
        else:
            labels[trial["trial_id"]] = str(trial["trial_id"])
    return labels


def learning_curves(experiment: Experiment, out_dir: Path) -> list[Path]:
    """Train and validation loss and accuracy per epoch, one line per trial, as in the study's figures."""
    history = experiment.history
    if history.empty or history["epoch"].max() <= 1:
        return []  # single-epoch tasks (the SVMs) have no curves
    labels = _trial_labels(experiment)
    figure, axes = plt.subplots(2, 2, figsize=(11, 7.5), sharex=True)
    panels = [("train_loss", "train loss"), ("val_loss", "validation loss"), ("train_acc", "train accuracy"), ("val_acc", "validation accuracy")]
    for axis, (metric, title) in zip(axes.flat, panels):
        for trial_id, trial_history in history.groupby("trial_id", sort=False):
            axis.plot(trial_history["epoch"], trial_history[metric], marker=".", label=labels.get(trial_id, trial_id))
        axis.set_title(title)
        axis.set_xlabel("epoch")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.grid(alpha=0.3)
    if history["trial_id"].nunique() <= MAX_LEGEND_ENTRIES:
        axes[0, 1].legend(fontsize=8, loc="best")
    figure.suptitle(f"{experiment.name}: learning curves ({experiment.task})")
    return save_figure(figure, out_dir, "learning_curves")


def accuracy_vs_factor(experiment: Experiment, out_dir: Path) -> list[Path]:
    """Validation and test accuracy against the preset's swept factor (the study's one-factor plots)."""
    factors = swept_factors(experiment)
    if len(factors) != 1:
        return []
    factor = factors[0]
    trials = experiment.trials.sort_values("order")
    values = trials[CONFIG_PREFIX + factor]
    figure, axis = plt.subplots(figsize=(7, 4.5))
    numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
    positions = values.to_numpy(dtype=float) if numeric else np.arange(len(values))
    for metric, style in (("val_acc", "o-"), ("test_acc", "s--")):
        axis.plot(positions, trials[metric].astype(float), style, label=metric)
    if numeric and positions.min() > 0 and positions.max() / positions.min() > LOG_SCALE_RATIO:
        axis.set_xscale("log")
    if not numeric:
        axis.set_xticks(positions, [short_value(v) for v in values], rotation=20)
    _label(axis, factor, "accuracy", f"{experiment.name}: accuracy against {factor}")
    return save_figure(figure, out_dir, f"accuracy_vs_{factor}")


def _encoded_params(experiment: Experiment, params: list[str]) -> pd.DataFrame:
    """Each parameter scaled to [0, 1] (log for wide positive ranges; categories by their order)."""
    encoded = {}
    for param in params:
        column = experiment.trials[CONFIG_PREFIX + param]
        if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
            values = column.astype(float)
            if values.min() > 0 and values.max() / values.min() > LOG_SCALE_RATIO:
                values = np.log10(values)
        else:
            categories = sorted(column.map(str).unique())
            values = column.map(str).map(categories.index).astype(float)
        span = values.max() - values.min()
        encoded[param] = (values - values.min()) / span if span else values * 0 + 0.5
    return pd.DataFrame(encoded)


def parallel_coordinates(experiment: Experiment, out_dir: Path) -> list[Path]:
    """Every searched parameter as an axis, one line per trial coloured by validation accuracy."""
    params = [p for p in experiment.searched_params() if p not in ("seed", "epochs")]
    trials = experiment.trials
    scored = trials["val_acc"].notna()
    if experiment.space != "optuna" or len(params) < 2 or scored.sum() < 2:
        return []
    encoded = _encoded_params(experiment, params)[scored.to_numpy()]
    accuracy = trials.loc[scored, "val_acc"].astype(float).to_numpy()
    colours = plt.cm.viridis((accuracy - accuracy.min()) / max(accuracy.max() - accuracy.min(), 1e-12))
    figure, axis = plt.subplots(figsize=(max(8, 1.1 * len(params)), 5))
    for row, colour in zip(encoded.to_numpy(), colours):
        axis.plot(range(len(params)), row, color=colour, alpha=0.8)
    axis.set_xticks(range(len(params)), params, rotation=30, ha="right")
    axis.set_yticks([0, 1], ["low", "high"])
    mappable = plt.cm.ScalarMappable(cmap="viridis", norm=plt.Normalize(accuracy.min(), accuracy.max()))
    figure.colorbar(mappable, ax=axis, label="val_acc")
    axis.set_title(f"{experiment.name}: parallel coordinates of the searched parameters")
    return save_figure(figure, out_dir, "parallel_coordinates")


def best_so_far(experiment: Experiment, out_dir: Path) -> list[Path]:
    """Best validation accuracy against the number of trials started, in the order they were proposed."""
    trials = experiment.trials.sort_values("order")
    if experiment.space != "optuna" or trials["val_acc"].notna().sum() < 2:
        return []
    best = trials["val_acc"].astype(float).fillna(-np.inf).cummax().replace(-np.inf, np.nan)
    figure, axis = plt.subplots(figsize=(7, 4.5))
    axis.plot(np.arange(1, len(trials) + 1), trials["val_acc"].astype(float), "o", alpha=0.5, label="trial val_acc")
    axis.step(np.arange(1, len(trials) + 1), best, where="post", label="best so far")
    _label(axis, "trials", "validation accuracy", f"{experiment.name}: best validation accuracy so far")
    return save_figure(figure, out_dir, "best_val_acc_so_far")


def asha_stops(experiment: Experiment, out_dir: Path) -> list[Path]:
    """Epochs each trial ran and its accuracy, coloured by status: where ASHA stopped trials."""
    trials = experiment.trials
    if "stopped_early" not in set(trials["status"]):
        return []
    figure, axis = plt.subplots(figsize=(7, 4.5))
    for status, group in trials.groupby("status"):
        axis.scatter(group["epochs_run"], group["val_acc"].astype(float), label=status, color=STATUS_COLOURS.get(status, "black"), alpha=0.8)
    _label(axis, "epochs run", "best validation accuracy", f"{experiment.name}: where ASHA stopped trials")
    return save_figure(figure, out_dir, "asha_stopped_trials")


FIGURES = (learning_curves, accuracy_vs_factor, parallel_coordinates, best_so_far, asha_stops)


def plot_experiment(experiment: Experiment, out_dir: Path) -> list[Path]:
    """Every figure that applies to this experiment; returns the files written."""
    return [path for figure in FIGURES for path in figure(experiment, out_dir)]

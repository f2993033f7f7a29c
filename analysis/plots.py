"""The study's figures from an experiment's files, with matplotlib: one PNG and one SVG per figure."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.ticker import MaxNLocator

from analysis.results import CONFIG_PREFIX, LOG_SCALE_RATIO, Experiment, loss_ceiling
from analysis.tables import OPTUNA_SPACE, swept_factors
from scenetune.atomic import write_text
from scenetune.experiment import short_value

MAX_LEGEND_ENTRIES = 12
STATUS_COLOURS = {
    "completed": "tab:green",
    "stopped_early": "tab:orange",
    "budget_ended": "tab:olive",
    "diverged": "tab:red",
    "error": "tab:red",
    "infeasible": "tab:gray",
    "running": "tab:blue",
    "pending": "tab:gray",
    "interrupted": "tab:purple",
    "too_slow": "tab:brown",
}


def save_figure(figure: plt.Figure, out_dir: Path, name: str) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{name}.{suffix}" for suffix in ("png", "svg")]
    # The tight box once for both formats: laying out every label is most of a figure's saving time.
    tight = figure.get_tightbbox(figure.canvas.get_renderer()).padded(plt.rcParams["savefig.pad_inches"])
    for path in paths:
        figure.savefig(path, dpi=120, bbox_inches=tight)
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
            labels[trial["trial_id"]] = " ".join(
                f"{f}={short_value(trial[CONFIG_PREFIX + f])}" for f in factors
            )
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
    panels = [
        ("train_loss", "train loss"),
        ("val_loss", "validation loss"),
        ("train_acc", "train accuracy"),
        ("val_acc", "validation accuracy"),
    ]
    for axis, (metric, title) in zip(axes.flat, panels):
        is_loss = metric.endswith("loss")
        ceiling = loss_ceiling(history[["train_loss", "val_loss"]].stack()) if is_loss else None
        for trial_id, trial_history in history.groupby("trial_id", sort=False):
            values = trial_history[metric].astype(float)
            line = axis.plot(
                trial_history["epoch"],
                values.clip(upper=ceiling),
                marker=".",
                label=labels.get(trial_id, trial_id),
            )[0]
            if ceiling is not None:
                beyond = ~values.le(ceiling)  # larger than the ceiling, infinite or NaN: a diverged trial
                axis.plot(
                    trial_history["epoch"][beyond],
                    np.full(int(beyond.sum()), ceiling),
                    "x",
                    color=line.get_color(),
                    markersize=9,
                )
        if is_loss:
            axis.set_yscale("log")
        axis.set_title(
            title
            + (
                " (log; x: diverged, clipped)"
                if is_loss and ceiling is not None and _diverged(history[metric], ceiling)
                else ""
            )
        )
        axis.set_xlabel("epoch")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.grid(alpha=0.3)
    if history["trial_id"].nunique() <= MAX_LEGEND_ENTRIES:
        axes[0, 1].legend(fontsize=8, loc="best")
    figure.suptitle(f"{experiment.name}: learning curves ({experiment.task})")
    return save_figure(figure, out_dir, "learning_curves")


def _diverged(losses: pd.Series, ceiling: float) -> bool:
    return bool((~losses.astype(float).le(ceiling)).any())


def accuracy_vs_factor(experiment: Experiment, out_dir: Path) -> list[Path]:
    """Validation and test accuracy against the preset's swept factor (the study's one-factor plots)."""
    factors = swept_factors(experiment)
    if not factors:
        return []
    trials = experiment.trials.sort_values("order")
    if len(factors) == 1:
        factor = factors[0]
        values = trials[CONFIG_PREFIX + factor]
    else:  # a preset that varies several keys together (batch norm and dropout): one label per point
        factor = " and ".join(factors)
        values = trials[[CONFIG_PREFIX + f for f in factors]].apply(
            lambda row: " ".join(f"{f}={short_value(v)}" for f, v in zip(factors, row)), axis=1
        )
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
    return save_figure(figure, out_dir, f"accuracy_vs_{'_and_'.join(factors)}")


def optuna_figures(experiment: Experiment, out_dir: Path) -> list[Path]:
    """Optuna's own figures of a search, from the experiment rebuilt as an Optuna study: parallel
    coordinates and slices with the parameters' real values, the optimisation history, and importance."""
    import warnings

    from optuna.exceptions import ExperimentalWarning
    from optuna.visualization import matplotlib as optuna_plots

    from analysis.importance import MIN_TRIALS, rebuild_study

    if experiment.space != OPTUNA_SPACE:
        return []
    study = rebuild_study(experiment)
    scored = len(study.trials)
    varied = {name for trial in study.trials for name in trial.params}
    figures = [("optimization_history", optuna_plots.plot_optimization_history, scored >= 2)]
    figures += [
        ("parallel_coordinates", optuna_plots.plot_parallel_coordinate, scored >= 2 and len(varied) >= 2),
        ("slices", optuna_plots.plot_slice, scored >= 2 and bool(varied)),
        (
            "hyperparameter_importance",
            optuna_plots.plot_param_importances,
            scored >= MIN_TRIALS and bool(varied),
        ),
    ]
    written = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        # A parameter that kept one value, or a branch with one trial, draws all the same; say nothing.
        warnings.simplefilter("ignore", UserWarning)
        for name, draw, applies in figures:
            if not applies:
                continue
            axes = (
                draw(study, target_name=experiment.objective.metric)
                if name != "hyperparameter_importance"
                else draw(study)
            )
            axes = np.ravel(axes)
            figure = axes[0].figure
            title = f"{experiment.name}: {name.replace('_', ' ')}"
            if len(axes) == 1:
                axes[0].set_title(title)
            else:
                figure.suptitle(title)
            if name == "parallel_coordinates":  # one axis per parameter, each with its own values
                figure.set_size_inches(max(8.0, 1.4 * (len(varied) + 1)), 5.5)
            written += save_figure(figure, out_dir, name)
    return written


def asha_stops(experiment: Experiment, out_dir: Path) -> list[Path]:
    """Epochs each trial ran and its accuracy, coloured by status: where ASHA stopped trials."""
    trials = experiment.trials
    if "stopped_early" not in set(trials["status"]):
        return []
    figure, axis = plt.subplots(figsize=(7, 4.5))
    for status, group in trials.groupby("status"):
        axis.scatter(
            group["epochs_run"],
            group["val_acc"].astype(float),
            label=status,
            color=STATUS_COLOURS.get(status, "black"),
            alpha=0.8,
        )
    _label(axis, "epochs run", "best validation accuracy", f"{experiment.name}: where ASHA stopped trials")
    return save_figure(figure, out_dir, "asha_stopped_trials")


def approach_accuracies(approaches: pd.DataFrame, out_dir: Path) -> list[Path]:
    """The study's approaches side by side: test accuracy (the refit mean where there are refits) with
    its 95% interval over the test images."""
    rows = approaches[approaches["test_acc"].notna()]
    if rows.empty:
        return []
    refit = rows["refit_test_acc"].notna()
    accuracy = rows["refit_test_acc"].where(refit, rows["test_acc"]).astype(float)
    low = rows["refit_low"].where(refit, rows["test_acc_low"]).astype(float).fillna(accuracy).to_numpy()
    high = rows["refit_high"].where(refit, rows["test_acc_high"]).astype(float).fillna(accuracy).to_numpy()
    accuracy = accuracy.to_numpy()
    figure, axis = plt.subplots(figsize=(8, 0.6 * len(rows) + 1.8))
    positions = np.arange(len(rows))[::-1]
    axis.barh(
        positions, accuracy, xerr=[accuracy - low, high - accuracy], capsize=4, color="tab:blue", alpha=0.8
    )
    axis.set_yticks(positions, [f"{a} (refit mean)" if r else a for a, r in zip(rows["approach"], refit)])
    axis.set_xlim(0, 1)
    axis.set_xlabel("test accuracy (bars: 95% bootstrap interval over the test images)")
    axis.grid(axis="x", alpha=0.3)
    axis.set_title("test accuracy per approach")
    return save_figure(figure, out_dir, "test_accuracy_per_approach")


def confusion_matrix_figure(experiment: Experiment, out_dir: Path) -> list[Path]:
    """The confusion matrix on the test images (rows: true class) of the refit models, pooled over
    their seeds, or of the best trial where there was no refit."""
    from sklearn.metrics import ConfusionMatrixDisplay

    from analysis.uncertainty import predictions_on_test, refit_predictions

    refits = refit_predictions(experiment.path)
    best = experiment.best_row()
    if refits:
        predictions = tuple(np.concatenate([run[i] for run in refits]) for i in (1, 2))
        whose = f"refit models' confusion matrix ({len(refits)} seeds pooled)"
    else:
        predictions = None if best is None else predictions_on_test(best["checkpoint"])
        whose = "best trial's confusion matrix"
    if predictions is None:
        return []
    classes = experiment.record.get("data", {}).get("classes") or None
    labels = list(range(len(classes))) if classes else None
    size = max(5.0, 0.5 * len(classes or []) + 3)
    figure, axis = plt.subplots(figsize=(size, size))
    ConfusionMatrixDisplay.from_predictions(
        predictions[1],
        predictions[0],
        labels=labels,
        display_labels=classes,
        ax=axis,
        colorbar=False,
        xticks_rotation=45,
    )
    axis.grid(False)
    axis.set_title(f"{experiment.name}: {whose} (test)")
    return save_figure(figure, out_dir, "confusion_matrix")


FIGURES = (learning_curves, accuracy_vs_factor, optuna_figures, asha_stops, confusion_matrix_figure)


def plot_experiment(experiment: Experiment, out_dir: Path) -> list[Path]:
    """Every figure that applies to this experiment; returns the files written."""
    return [path for figure in FIGURES for path in figure(experiment, out_dir)]


# In a figure folder: which figures it holds, drawn from which state of the experiment.
DRAWN_FILE = "drawn.json"


def _experiment_state(experiment_dir: Path) -> dict[str, Any]:
    """What changes whenever a sweep, a resume or a refit writes anything into the experiment."""
    files = [path.stat() for path in experiment_dir.rglob("*") if path.is_file()]
    return {
        "files": len(files),
        "bytes": sum(f.st_size for f in files),
        "newest_ns": max((f.st_mtime_ns for f in files), default=0),
        "drawn_by": [figure.__name__ for figure in FIGURES],
    }


def plot_experiment_once(experiment: Experiment, out_dir: Path) -> list[Path]:
    """plot_experiment, unless `out_dir` holds every figure drawn from the experiment as it is now: a
    resumed study redraws only the steps that changed (a figure set takes seconds per step)."""
    state = _experiment_state(experiment.path)
    record = out_dir / DRAWN_FILE
    if record.is_file():
        drawn = json.loads(record.read_text())
        paths = [out_dir / name for name in drawn["figures"]]
        if drawn["experiment"] == state and all(path.is_file() for path in paths):
            return paths
    record.unlink(missing_ok=True)  # drawing again: an interrupted drawing must not count as done
    written = plot_experiment(experiment, out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # Whole or absent, never half written: it is what says the drawing finished.
    write_text(record, json.dumps({"experiment": state, "figures": [path.name for path in written]}))
    return written

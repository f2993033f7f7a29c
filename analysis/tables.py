"""The study's tables: a summary per experiment, and the one-factor table of a preset sweep."""

from __future__ import annotations

from typing import Any

import pandas as pd

from analysis.results import Experiment
from analysis.uncertainty import checkpoint_interval
from scenetune.experiment import describe_config, is_present, short_value

FORMATS = ("md", "csv", "latex")
TABLE_COLUMNS = [
    "name",
    "changes",
    "params",
    "train_loss",
    "val_loss",
    "train_acc",
    "val_acc",
    "test_acc",
    "test_95ci",  # bootstrap interval over the test images, from the predictions the checkpoint keeps
    "epochs",
    "status",
]
OPTUNA_SPACE = "optuna"


def swept_factors(experiment: Experiment) -> list[str]:
    """For a preset sweep, the parameters its grid varies."""
    if experiment.space == OPTUNA_SPACE:
        return []
    defaults = experiment.defaults
    return [p for p in experiment.searched_params() if p in defaults]


def _ordered_rows(experiment: Experiment) -> pd.DataFrame:
    """The summary rows with each trial's full config kept in `_config`, in the table's order."""
    factors = swept_factors(experiment)
    rows = []
    for _, trial in experiment.trials.iterrows():
        config = Experiment.config_of(trial)
        name = (
            " ".join(f"{f}={short_value(config.get(f))}" for f in factors)
            if factors
            else str(trial["trial_id"])
        )
        status = (
            trial["status"] if not is_present(trial.get("error")) else f"{trial['status']}: {trial['error']}"
        )
        retries = int(trial.get("retries") or 0)
        if retries:
            status += f" ({retries} {'retry' if retries == 1 else 'retries'})"
        rows.append(
            {
                "name": name,
                "changes": describe_config(config, experiment.defaults),
                "params": trial.get("n_params"),
                **{
                    metric: trial.get(metric)
                    for metric in ("train_loss", "val_loss", "train_acc", "val_acc", "test_acc")
                },
                "test_95ci": _interval(trial.get("checkpoint")),
                "epochs": trial.get("epochs_run"),
                "status": status,
                "_config": config,
                "_order": trial["order"],
            }
        )
    table = pd.DataFrame(rows, columns=[*TABLE_COLUMNS, "_config", "_order"])
    if factors:  # the preset's grid order, which is the order its trials were created in
        return table.sort_values("_order", kind="stable").reset_index(drop=True)
    return table.sort_values("val_acc", ascending=False, na_position="last", kind="stable").reset_index(
        drop=True
    )


def _interval(checkpoint: Any) -> str | None:
    interval = checkpoint_interval(checkpoint)
    return None if interval is None else f"[{interval[0]:.3f}, {interval[1]:.3f}]"


def summary_table(experiment: Experiment, top: int | None = None) -> pd.DataFrame:
    """One row per trial: the study's columns. Preset sweeps are ordered by the swept factor (the
    study's one-factor table), other sweeps by validation accuracy (the best epoch's, whose weights
    are the checkpoint's)."""
    table = _ordered_rows(experiment)[TABLE_COLUMNS]
    return table.head(top) if top else table


def _sort_key(value: Any) -> tuple[int, Any]:
    return (0, value) if isinstance(value, (int, float)) and not isinstance(value, bool) else (1, str(value))


def combined_table(
    experiments: list[Experiment], by: str | None = None, top: int | None = None
) -> pd.DataFrame:
    """Several experiments in one frame, with an `experiment` column; `by` groups rows by a parameter."""
    frames = []
    for experiment in experiments:
        rows = _ordered_rows(experiment)
        rows = rows.head(top) if top else rows
        rows.insert(0, "experiment", experiment.name)
        if by is not None:
            rows.insert(1, by, rows["_config"].map(lambda config: config.get(by)))
        frames.append(rows)
    if not frames:
        return pd.DataFrame(columns=["experiment", *TABLE_COLUMNS])
    combined = pd.concat(frames, ignore_index=True)
    if by is not None:
        combined["_group"] = combined[by].map(_sort_key)
        combined = combined.sort_values(["_group", "val_acc"], ascending=[True, False], kind="stable")
    return combined[[c for c in combined.columns if not c.startswith("_")]].reset_index(drop=True)


def render(table: pd.DataFrame, fmt: str = "md") -> str:
    """Markdown for the console, CSV and LaTeX for papers, with pandas' own writers."""
    if fmt == "csv":
        return table.to_csv(index=False)
    rounded = table.copy()
    for column in ("train_loss", "val_loss", "train_acc", "val_acc", "test_acc"):
        if column in rounded:
            rounded[column] = pd.to_numeric(rounded[column], errors="coerce").round(4)
    if fmt == "latex":
        return rounded.to_latex(index=False, na_rep="", float_format="%.4f")
    if fmt == "md":
        shown = rounded.astype(object).where(rounded.notna(), None)  # empty cells, not "nan"
        return shown.to_markdown(index=False, floatfmt=".4g", missingval="")
    raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")

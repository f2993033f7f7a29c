"""`scenetune replicate`'s report: each of the study's tables with our measured value beside its
published one, and the study's written conclusions, each marked agrees or disagrees from our numbers.

The published numbers are data (`analysis/published/study.csv`), read at run time: each row names
its table, its label in the study, the replication step that measures it, the configuration that
identifies its trial in that step (`match`), the metric, and the study's value (empty where the
study gave a figure, not a number).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.uncertainty import (
    Comparison,
    SpreadDifference,
    correct_on_test,
    paired_comparison,
    spread_difference,
)
from scenetune.environment import environment_section
from scenetune.experiment import TrialRecord, is_experiment_dir, is_present, load_trials
from scenetune.replication_steps import QUICK_EPOCHS, STATE_FILE, STEPS

PUBLISHED = Path(__file__).parent / "published" / "study.csv"
Correctness = dict[tuple[str, str], np.ndarray]  # (table, row) -> right or wrong on each test image
REPORT_COLUMNS = ["table", "row", "step", "metric", "measured", "test_acc", "published", "difference"]


def published_table(path: Path = PUBLISHED) -> pd.DataFrame:
    table = pd.read_csv(path)
    table["match"] = table["match"].map(json.loads)
    return table


def _matches(config: dict[str, Any], match: dict[str, Any]) -> bool:
    def same(a: Any, b: Any) -> bool:
        if isinstance(a, float) or isinstance(b, float):
            return a is not None and b is not None and math.isclose(float(a), float(b), rel_tol=1e-9)
        return a == b

    return all(same(config.get(key), value) for key, value in match.items())


def _trial_for(trials: list[TrialRecord], match: dict[str, Any]) -> TrialRecord | None:
    return next((t for t in trials if t.history and _matches(t.config, match)), None)


def _correct_on_test(trial: TrialRecord) -> np.ndarray | None:
    """Whether the trial's best-epoch model got each test image right (the images the study validated on)."""
    return correct_on_test(trial.checkpoint)


def measured(
    directory: Path, protocol: str, published: pd.DataFrame | None = None
) -> tuple[pd.DataFrame, Correctness]:
    """Every published row with what this replication measured for it: the metric at the trial's best
    validation epoch. The study validated on the test folder, so under `--protocol honest` (validation
    carved from train) validation accuracy is compared through the test accuracy instead. With it, per
    (table, row), the trial's per-image correctness for the paired tests behind the conclusions (rows
    without predictions are left out)."""
    published = published_table() if published is None else published
    trials = {
        step.name: load_trials(directory / step.name) if is_experiment_dir(directory / step.name) else []
        for step in STEPS
    }
    rows, correct, by_trial = [], {}, {}
    for entry in published.itertuples():
        trial = _trial_for(trials.get(entry.step, []), entry.match)
        report = trial.best_report() if trial is not None else {}
        metric = "test_acc" if protocol == "honest" and entry.metric == "val_acc" else entry.metric
        value = report.get(metric)
        value = float(value) if is_present(value) else None
        published_value = float(entry.published) if is_present(entry.published) else None
        rows.append(
            {
                "table": entry.table,
                "row": entry.row,
                "step": entry.step,
                "metric": entry.metric,
                "measured": value,
                "test_acc": float(report["test_acc"]) if is_present(report.get("test_acc")) else None,
                "published": published_value,
                "difference": value - published_value
                if value is not None and published_value is not None
                else None,
            }
        )
        if trial is not None:  # a trial measures several rows (its train and validation metrics)
            if trial.directory not in by_trial:
                by_trial[trial.directory] = _correct_on_test(trial)
            if by_trial[trial.directory] is not None:
                correct[(entry.table, entry.row)] = by_trial[trial.directory]
    return pd.DataFrame(rows, columns=REPORT_COLUMNS), correct


# ---------- the study's conclusions, computed from a measured table ----------


class Values:
    """Lookups into a measured (or published) table: value(table, row, metric); with the rows' per-image
    correctness, the paired comparison of two rows."""

    def __init__(
        self, table: pd.DataFrame, column: str = "measured", correct: Correctness | None = None
    ) -> None:
        self.table, self.column, self.correct = table, column, correct or {}

    def compare(self, a: tuple[str, str], b: tuple[str, str]) -> Comparison | None:
        """Row a minus row b over the same images, or None where either has no predictions."""
        right_a, right_b = self.correct.get(a), self.correct.get(b)
        if right_a is None or right_b is None or right_a.shape != right_b.shape:
            return None
        return paired_comparison(right_a, right_b)

    def value(self, table: str, row: str, metric: str = "val_acc") -> float | None:
        found = self.table[
            (self.table["table"] == table) & (self.table["row"] == row) & (self.table["metric"] == metric)
        ]
        if found.empty or not is_present(found.iloc[0][self.column]):
            return None
        return float(found.iloc[0][self.column])

    def of(self, table: str, metric: str = "val_acc") -> dict[str, float]:
        """Every row of a table that has a value, in the study's order."""
        rows = self.table[(self.table["table"] == table) & (self.table["metric"] == metric)]
        return {r: float(v) for r, v in zip(rows["row"], rows[self.column]) if is_present(v)}

    def best(self, table: str) -> str | None:
        values = self.of(table)
        return max(values, key=values.get) if values else None

    def spread(self, table: str) -> float | None:
        values = list(self.of(table).values())
        return max(values) - min(values) if len(values) >= 2 else None

    def spread_against(self, table: str, other: str) -> SpreadDifference | None:
        """How much more table's rows spread than other's over the same test images, or None where a
        row has no predictions."""
        groups = [[self.correct.get((t, row)) for row in self.of(t)] for t in (table, other)]
        rows = [r for group in groups for r in group]
        if any(r is None for r in rows) or len({r.shape for r in rows}) != 1:
            return None
        return spread_difference(*groups)


@dataclass(frozen=True)
class Verdict:
    claim: str
    agrees: bool | None  # None: this replication did not measure what the claim needs
    evidence: str
    told: bool = True  # False: the rows the claim ranks differ by less than the test images can tell

    @property
    def mark(self) -> str:
        if self.agrees is not None and not self.told:
            return "cannot tell"
        return {True: "agrees", False: "disagrees", None: "not measured"}[self.agrees]


def _paired(comparison: Comparison | None, a: str, b: str) -> str:
    """The evidence of a paired test, or nothing without one."""
    if comparison is None:
        return ""
    return (
        f"; {a} - {b} {comparison.difference * 100:+.1f} points, 95% CI "
        f"[{comparison.low * 100:+.1f}, {comparison.high * 100:+.1f}], {comparison.test} p = {comparison.p_value:.2g}"
    )


def _ranked_verdict(
    claim: str, agrees: bool, evidence: str, comparison: Comparison | None, names: tuple[str, str]
) -> Verdict:
    """A claim that one row ranks above another: cannot tell when their paired difference covers 0."""
    told = comparison is None or comparison.distinguishable
    return Verdict(claim, agrees, evidence + _paired(comparison, *names), told)


def _argmax_claim(claim: str, table: str, expected: str) -> Callable[[Values], Verdict]:
    def check(values: Values) -> Verdict:
        ranked = sorted(values.of(table).items(), key=lambda item: -item[1])
        if not ranked:
            return Verdict(claim, None, f"no {table} results")
        shown = ", ".join(f"{row} {value:.3f}" for row, value in values.of(table).items())
        best = ranked[0][0]
        # Best as claimed: is it told from the runner-up? Not: is the best told from the claimed row?
        other = (ranked[1][0] if len(ranked) > 1 else None) if best == expected else expected
        comparison = values.compare((table, best), (table, other)) if other is not None else None
        return _ranked_verdict(
            claim, best == expected, f"best: {best} ({shown})", comparison, (best, str(other))
        )

    return check


def _input_size_enough(values: Values) -> Verdict:
    claim = "32x32 input is enough: larger images do not gain validation accuracy"
    base = values.value("image_size", "32x32 (default)")
    larger = {row: values.value("image_size", row) for row in ("64x64", "128x128")}
    larger = {row: value for row, value in larger.items() if value is not None}
    if base is None or not larger:
        return Verdict(claim, None, "no image size results")
    best_larger = max(larger, key=larger.get)
    comparison = values.compare(("image_size", best_larger), ("image_size", "32x32 (default)"))
    # "No gain" is what the data say unless a larger input is better by a difference they can tell.
    agrees = larger[best_larger] <= base or (comparison is not None and not comparison.distinguishable)
    evidence = f"32x32 {base:.3f}, best larger {larger[best_larger]:.3f}"
    return Verdict(claim, agrees, evidence + _paired(comparison, best_larger, "32x32"))


def _batch_16_appropriate(values: Values) -> Verdict:
    claim = "Batch size 16 is appropriate: among the highest accuracies (top 3 of the batch sizes)"
    ranked = sorted(values.of("batch_size").items(), key=lambda item: -item[1])
    names = [row for row, _ in ranked]
    if "batch 16 (default)" not in names:
        return Verdict(claim, None, "no batch-16 result")
    rank = names.index("batch 16 (default)") + 1
    return Verdict(claim, rank <= 3, f"batch 16 ranks {rank} of {len(names)}")


def _regularisation_narrows_gap(values: Values) -> Verdict:
    claim = "Batch norm and dropout reduce the gap between train and validation accuracy (model 1.4.4 vs 1.4)"
    gaps = {}
    for row in ("model_1.4", "model_1.4.4"):
        train, val = values.value("summary", row, "train_acc"), values.value("summary", row, "val_acc")
        if train is None or val is None:
            return Verdict(claim, None, f"no train/validation accuracy for {row}")
        gaps[row] = train - val
    return Verdict(
        claim,
        gaps["model_1.4.4"] < gaps["model_1.4"],
        f"gap {gaps['model_1.4']:.3f} without, {gaps['model_1.4.4']:.3f} with",
    )


def _depth_over_width(values: Values) -> Verdict:
    claim = "Depth matters more than width: validation accuracy varies more across depths than across widths"
    depth, width = values.spread("depth"), values.spread("width")
    if depth is None or width is None:
        return Verdict(claim, None, "no depth or width results")
    evidence = f"spread over depths {depth:.3f}, over widths {width:.3f}"
    difference = values.spread_against("depth", "width")
    if difference is None:
        return Verdict(claim, depth > width, evidence)
    evidence += (
        f"; depths - widths {difference.difference * 100:+.1f} points, 95% CI "
        f"[{difference.low * 100:+.1f}, {difference.high * 100:+.1f}] (paired bootstrap over {difference.images} test images)"
    )
    return Verdict(claim, depth > width, evidence, told=difference.distinguishable)


def _svm_no_better(values: Values) -> Verdict:
    claim = "The SVM on deep features does not improve on the end-to-end network (model 2)"
    svm, network = values.of("svm_layer"), values.value("width", "model 2 (4096 first)")
    if not svm or network is None:
        return Verdict(claim, None, "no SVM or model 2 results")
    layer = max(svm, key=svm.get)
    comparison = values.compare(("svm_layer", layer), ("width", "model 2 (4096 first)"))
    # "Does not improve" holds unless the SVM is better by a difference the data can tell.
    agrees = svm[layer] <= network or (comparison is not None and not comparison.distinguishable)
    evidence = f"best layer {svm[layer]:.3f}, model 2 {network:.3f}"
    return Verdict(claim, agrees, evidence + _paired(comparison, f"SVM on {layer}", "model 2"))


def _mean_aggregation(values: Values) -> Verdict:
    claim = "Mean aggregation beats max and min"
    mean, others = (
        values.value("aggregation", "mean"),
        [values.value("aggregation", r) for r in ("max", "min")],
    )
    if mean is None or None in others:
        return Verdict(claim, None, "no aggregation results")
    rival = "max" if others[0] >= others[1] else "min"
    comparison = values.compare(("aggregation", "mean"), ("aggregation", rival))
    evidence = f"mean {mean:.3f}, max {others[0]:.3f}, min {others[1]:.3f}"
    return _ranked_verdict(claim, mean > max(others), evidence, comparison, ("mean", rival))


def _patch_beats_bovw(values: Values) -> Verdict:
    claim = "The end-to-end patch MLP beats BoVW on its learnt descriptors"
    patch = {("patch_size", row): v for row, v in values.of("patch_size").items()}
    patch |= {("aggregation", row): v for row, v in values.of("aggregation").items()}
    bovw = {("codebook", row): v for row, v in values.of("codebook").items()}
    if not patch or not bovw:
        return Verdict(claim, None, "no patch or BoVW results")
    best_patch, best_bovw = max(patch, key=patch.get), max(bovw, key=bovw.get)
    evidence = f"best patch MLP {patch[best_patch]:.3f}, best BoVW {bovw[best_bovw]:.3f}"
    comparison = values.compare(best_patch, best_bovw)
    return _ranked_verdict(
        claim, patch[best_patch] > bovw[best_bovw], evidence, comparison, ("patch MLP", "BoVW")
    )


CONCLUSIONS: tuple[Callable[[Values], Verdict], ...] = (
    _argmax_claim("The default learning rate 1e-3 is best", "lr", "lr 1e-3 (default)"),
    _input_size_enough,
    _batch_16_appropriate,
    _argmax_claim("4 hidden layers are best (model 1.4)", "depth", "hidLayers_4"),
    _regularisation_narrows_gap,
    _depth_over_width,
    _argmax_claim("GlorotNormal is the best initializer", "initializer", "GlorotNormal"),
    _svm_no_better,
    _argmax_claim("32x32 patches are best", "patch_size", "32x32"),
    _mean_aggregation,
    _argmax_claim("A codebook of 256 words is best", "codebook", "256 words"),
    _patch_beats_bovw,
)


def conclusions(
    table: pd.DataFrame, column: str = "measured", correct: Correctness | None = None
) -> list[Verdict]:
    """The study's claims judged on a table; with per-image correctness, a claim that ranks rows the
    test images cannot tell apart is marked "cannot tell" instead of agrees or disagrees."""
    values = Values(table, column, correct)
    return [check(values) for check in CONCLUSIONS]


def replication_payload(directory: Path) -> dict[str, Any]:
    """What the dashboard and the report show of a replication, computed from its trials as they are
    (so a running replication shows its tables filling in)."""
    state = json.loads((directory / STATE_FILE).read_text())
    table, correct = measured(directory, state["request"]["protocol"])
    return {
        "name": directory.name,
        "request": state["request"],
        "steps": [{"name": step.name, "status": state["steps"].get(step.name, "not run")} for step in STEPS],
        "conclusions": [
            {"claim": v.claim, "mark": v.mark, "evidence": v.evidence}
            for v in conclusions(table, correct=correct)
        ],
        "tables": {
            name: json.loads(rows.drop(columns=["table", "step"]).to_json(orient="records"))
            for name, rows in table.groupby("table", sort=False)
        },
    }


# ---------- the report ----------


def _fmt(value: Any, digits: int = 3) -> str:
    return f"{value:.{digits}f}" if is_present(value) else "-"


def _table_markdown(rows: pd.DataFrame) -> str:
    lines = ["| row | metric | measured | test_acc | published | difference |", "|---|---|---|---|---|---|"]
    for row in rows.itertuples():
        difference = f"{row.difference:+.3f}" if is_present(row.difference) else "-"
        lines.append(
            f"| {row.row} | {row.metric} | {_fmt(row.measured)} | {_fmt(row.test_acc)} | {_fmt(row.published, 4)} | {difference} |"
        )
    return "\n".join(lines)


def write_replication(directory: Path, state: dict[str, Any]) -> str:
    """replication.md, .csv and .json, and each step's figures; returns the conclusions as text."""
    from analysis.plots import accuracy_vs_factor, learning_curves
    from analysis.results import load_experiment

    request = state["request"]
    table, correct = measured(directory, request["protocol"])
    verdicts = conclusions(table, correct=correct)
    table.to_csv(directory / "replication.csv", index=False)
    figures: dict[str, list[str]] = {}
    environments = {}
    for step in STEPS:
        if is_experiment_dir(directory / step.name):
            experiment, out = load_experiment(directory / step.name), directory / "figures" / step.name
            environments[step.name] = experiment.record.get("environment")
            # The study's own figures: per-epoch curves, one line per value, and accuracy against the factor.
            paths = learning_curves(experiment, out) + accuracy_vs_factor(experiment, out)
            figures[step.name] = [str(p.relative_to(directory)) for p in paths if p.suffix == ".png"]
    steps = [
        {
            "name": step.name,
            "task": step.task,
            "preset": step.preset,
            "starts_from": step.study_start if request["carry"] == "study" else step.best_start,
            "pins": state.get("pins", {}).get(step.name),
            "status": state["steps"].get(step.name, "not run"),
        }
        for step in STEPS
    ]
    (directory / "replication.json").write_text(
        json.dumps(
            {
                "request": request,
                "steps": steps,
                "tables": json.loads(table.to_json(orient="records")),
                "conclusions": [{**asdict(v), "mark": v.mark} for v in verdicts],
                "figures": figures,
            },
            indent=2,
        )
    )
    epochs = QUICK_EPOCHS if request["quick"] else request["epochs"] or "the task default"
    validation = (
        "the test folder, as in the study"
        if request["protocol"] == "study"
        else "carved from train; `measured` accuracy is on the test folder, the images the study validated on"
    )
    lines = [
        f"# Replication {directory.name}: the study's one-factor chain",
        "",
        f"Data `{request['data']}`; protocol `{request['protocol']}` (validation: {validation}); carry "
        f"`{request['carry']}`; epochs {epochs}{' (quick)' if request['quick'] else ''}; "
        f"seed {request['seed']}. Each value is the trial's best validation epoch. The study trained on "
        "256x256 originals; a 64x64 copy of the data upsamples the 128x128 input point and gives a "
        "coarser patch grid.",
        "",
        "## Steps",
        "",
        *[
            f"{i}. `{s['name']}` ({s['task']} --space {s['preset']}, {s['status']}): starts from {s['starts_from']}; pins `{json.dumps(s['pins'])}`"
            for i, s in enumerate(steps, 1)
        ],
        "",
        "## The study's conclusions",
        "",
        *[f"- **{v.mark}**: {v.claim} ({v.evidence})." for v in verdicts],
        "",
    ]
    for name, rows in table.groupby("table", sort=False):
        lines += [f"## Table: {name}", "", _table_markdown(rows), ""]
        step = rows.iloc[0]["step"]
        lines += [f"![{Path(p).stem}]({p})" for p in figures.get(step, [])] + [""]
    lines += environment_section(environments)
    (directory / "replication.md").write_text("\n".join(lines))
    return "\n".join(f"{v.mark:>12}: {v.claim}" for v in verdicts)

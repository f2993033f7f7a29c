"""`scenetune study`: the whole learnt-vs-handcrafted study, task after task, then its report.

mlp, then feature_svm from the best MLP; patch_mlp, then bovw with learnt descriptors from the
best patch MLP; and bovw with dense SIFT. Each step is an ordinary experiment under the study's
folder; `study.json` records which steps are done, so `--resume` continues where it stopped.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from analysis import study as comparison
from analysis.plots import approach_accuracies, plot_experiment_once
from analysis.results import load_experiment
from analysis.tables import render, summary_table
from analysis.uncertainty import refit_summary
from scenetune.chain import check_directory, claim_directory, read_state, write_state
from scenetune.environment import environment_section
from scenetune.errors import UserError
from scenetune.experiment import is_experiment_dir
from scenetune.heartbeat import driver_heartbeat
from scenetune.registry import get_task
from scenetune.study_steps import STEPS, StudyStep
from scenetune.sweep import SweepRequest, check_name, prepare, run

STATE_FILE = "study.json"
DEFAULT_BUDGET_S = 3600.0
MAX_SAMPLES_UNDER_BUDGET = 500  # the time budget, not this, ends each step's search
TABLE_ROWS_PER_TASK = 10


@dataclass
class StudyRequest:
    data: str = "digits"
    quick: bool = False
    budget_s: float | None = None
    storage: str = "results"
    name: str | None = None
    resume: bool = False
    seed: int = 0
    refit: int = 3  # seeds each step's best configuration is trained again with
    address: str | None = None
    verbose: bool = False


def _study_dir(request: StudyRequest) -> Path:
    name = check_name(request.name) if request.name is not None else f"study-{time.strftime('%Y%m%d-%H%M%S')}"
    return Path(request.storage).expanduser().resolve() / name


def _read_state(directory: Path) -> dict[str, Any]:
    return read_state(directory / STATE_FILE)


def _write_state(directory: Path, state: dict[str, Any]) -> None:
    write_state(directory / STATE_FILE, state)


def _step_plan(step_request: SweepRequest) -> str:
    """What a step will spend, in words: its search, then its refits, which come after the search's
    share of the budget."""
    search = (
        f"a search of {step_request.samples} trials"
        if step_request.time_budget_s is None
        else f"a search of {step_request.time_budget_s:.0f} s"
    )
    if not step_request.refit:
        return search
    count = step_request.refit if get_task(step_request.task).seeded else 1
    return f"{search}, then {count} refit{'s' if count > 1 else ''} of its best configuration"


def _step_request(step: StudyStep, request: StudyRequest, directory: Path, resume: bool) -> SweepRequest:
    pins = {**step.pins, **(step.quick_pins if request.quick else {})}
    source = str(directory / step.source_step) if step.source_step else None
    budget = None if request.quick else (request.budget_s or DEFAULT_BUDGET_S) * step.budget_share
    return SweepRequest(
        task=step.task,
        data=None if source else request.data,
        source=source,
        samples=step.quick_samples if request.quick else MAX_SAMPLES_UNDER_BUDGET,
        epochs=step.quick_epochs if request.quick else None,
        seed=request.seed,
        pinned=pins,
        time_budget_s=budget,
        refit=request.refit,
        storage=str(directory),
        name=step.name,
        resume=resume,
        address=request.address,
        verbose=request.verbose,
    )


def check_request(request: StudyRequest) -> Path:
    """Everything that can be checked before the first sweep starts."""
    from scenetune.data import check_data_source

    if request.refit < 0:
        raise UserError(f"--refit must be 0 or more seeds, got {request.refit}")
    if request.budget_s is not None and request.budget_s <= 0:
        raise UserError(f"--budget must be positive, got {request.budget_s}")
    directory = _study_dir(request)
    check_directory(directory, request.resume, request.name, STATE_FILE, "study")
    check_data_source(request.data)
    return directory


def run_study(request: StudyRequest) -> Path:
    """Run every step not yet done, then write study.md, study.csv and the figures."""
    directory = check_request(request)
    if request.resume:
        state = _read_state(directory)
        request = StudyRequest(
            **{**state["request"], "resume": True, "address": request.address, "verbose": request.verbose}
        )
    else:
        claim_directory(directory, "study")
        state = {
            "request": {k: v for k, v in vars(request).items() if k not in ("resume", "address", "verbose")},
            "steps": {},
        }
        state["request"]["name"] = directory.name
        _write_state(directory, state)
    with driver_heartbeat(directory):  # a second --resume is refused while this one runs
        for step in STEPS:
            status = state["steps"].get(step.name)
            if status in ("done", "skipped"):
                continue
            if step.source_step and state["steps"].get(step.source_step) != "done":
                state["steps"][step.name] = "skipped"
                _write_state(directory, state)
                continue
            resume = status == "running" and is_experiment_dir(directory / step.name)
            step_request = _step_request(step, request, directory, resume)
            print(f"\n== study step {step.name}: {step.approach} ({_step_plan(step_request)}) ==")
            state["steps"][step.name] = "running"
            _write_state(directory, state)
            outcome = run(prepare(step_request))
            state["steps"][step.name] = "done" if outcome.best_config is not None else "failed"
            _write_state(directory, state)
        table = write_report(directory, request)
        print(f"\n{table}\n")
        print(f"study report: {directory / 'study.md'} (and study.csv); figures: {directory / 'figures'}")
    return directory


def _cross_validated_note(approaches: list[str]) -> str:
    if not approaches:
        return ""
    return (
        f" The `val_acc` of {', '.join(approaches)} is a cross-validated accuracy on train + validation, "
        "which its trials were chosen by; the others' is on the validation split."
    )


def write_report(directory: Path, request: StudyRequest) -> str:
    """study.md and study.csv beside the step experiments, and each step's figures; returns the table."""
    rows, sections, mlp_trials, correctness, cross_validated = [], [], None, {}, []
    environments = {}
    for step in STEPS:
        path = directory / step.name
        if not is_experiment_dir(path):
            continue
        experiment = load_experiment(path)
        environments[step.name] = experiment.record.get("environment")
        refits = refit_summary(path)  # loads every refit's predictions and bootstraps: once per step
        row = comparison.approach_row(step.approach, experiment, refits)
        rows.append(row)
        if row.get("cv_folds"):
            cross_validated.append(f"{step.approach} ({row['cv_folds']} folds)")
        correct = comparison.approach_correctness(experiment, refits)
        if correct is not None:
            correctness[step.approach] = correct
        if step.task == "mlp":
            mlp_trials = experiment.trials
        figures = plot_experiment_once(experiment, directory / "figures" / step.name)
        table = render(summary_table(experiment, TABLE_ROWS_PER_TASK))
        links = " ".join(f"[{p.stem}]({p.relative_to(directory)})" for p in figures if p.suffix == ".png")
        sections.append(
            f"### {step.approach} (`{step.name}`, {len(experiment.trials)} trials)\n\n{table}\n\n{links}\n"
        )
    approaches = comparison.approaches_frame(rows)
    approaches.to_csv(directory / "study.csv", index=False)
    bars = approach_accuracies(approaches, directory / "figures")
    table = render(approaches.drop(columns=["experiment"]))
    sentences = comparison.conclusions(approaches, mlp_trials, correctness)
    mode = "quick" if request.quick else f"budget {request.budget_s or DEFAULT_BUDGET_S:.0f} s"
    report = "\n".join(
        [
            f"# Study {directory.name}: learnt vs handcrafted features",
            "",
            f"Data: `{request.data}`; {mode}; seed {request.seed}. Each approach's best trial is chosen on validation "
            "accuracy; test accuracy is measured on that trial's best-validation weights, with its 95% bootstrap "
            "interval over the test images (`test_acc_low`, `test_acc_high`). The best configuration is then "
            "trained again with new seeds (on train + validation where validation came from train); the "
            "conclusions quote the mean over those refits (`refit_test_acc` ± `refit_std`, interval "
            "`refit_low`-`refit_high`). Two approaches are compared on the same test images with a paired "
            "bootstrap of the difference and McNemar's exact test (a paired permutation test on the share of "
            "refit models right on each image where there are refits); where the interval of the difference includes 0 or "
            "p >= 0.05, the conclusions say the data cannot tell them apart."
            + _cross_validated_note(cross_validated),
            "",
            "## Comparison",
            "",
            table,
            "",
            *[
                f"![test accuracy per approach]({path.relative_to(directory)})"
                for path in bars
                if path.suffix == ".png"
            ],
            "",
            "## Conclusions",
            "",
            *[f"- {sentence}" for sentence in sentences],
            "",
            "## Per-task results",
            "",
            *sections,
            *environment_section(environments),
        ]
    )
    (directory / "study.md").write_text(report)
    return table

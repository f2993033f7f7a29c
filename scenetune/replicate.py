"""`scenetune replicate`: the study's chain of one-factor experiments in one command, each step a
preset sweep (Ray Tune trials, packed and resumable) that starts from the best of the steps before,
then replication.md/.csv/.json beside the study's published numbers.

The steps and their starting points are in `scenetune.replication_steps`; the comparison with the
published tables in `analysis.replication`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scenetune.chain import check_directory, claim_directory, read_state, write_state
from scenetune.errors import UserError
from scenetune.experiment import TrialRecord, best_trial, is_experiment_dir
from scenetune.heartbeat import driver_heartbeat
from scenetune.replication_steps import (
    CARRY_MODES,
    MLP_STEPS,
    PROTOCOLS,
    QUICK_EPOCHS,
    QUICK_PINS,
    STATE_FILE,
    STEPS,
    STUDY_LR_SCHEDULE,
    Chosen,
    ReplicationStep,
)
from scenetune.sweep import SweepRequest, check_name, prepare, run


@dataclass
class ReplicateRequest:
    data: str = "digits"
    protocol: str = "study"
    carry: str = "study"
    epochs: int | None = None
    quick: bool = False
    storage: str = "results"
    name: str | None = None
    resume: bool = False
    seed: int = 0
    address: str | None = None
    verbose: bool = False


def _directory(request: ReplicateRequest) -> Path:
    name = (
        check_name(request.name)
        if request.name is not None
        else f"replication-{time.strftime('%Y%m%d-%H%M%S')}"
    )
    return Path(request.storage).expanduser().resolve() / name


def check_request(request: ReplicateRequest) -> Path:
    """Everything that can be checked before the first step starts."""
    from scenetune.data import check_data_source

    if request.protocol not in PROTOCOLS:
        raise UserError(f"--protocol must be one of {', '.join(PROTOCOLS)}, got {request.protocol!r}")
    if request.carry not in CARRY_MODES:
        raise UserError(f"--carry must be one of {', '.join(CARRY_MODES)}, got {request.carry!r}")
    if request.epochs is not None and request.epochs < 1:
        raise UserError(f"--epochs must be at least 1, got {request.epochs}")
    directory = _directory(request)
    check_directory(directory, request.resume, request.name, STATE_FILE, "replication")
    if not request.resume:
        check_data_source(request.data)
    return directory


def chosen_so_far(directory: Path, done: list[str]) -> Chosen:
    """Each finished step's best configuration, and the best MLP of all MLP steps (`best_mlp`)."""
    chosen: Chosen = {}
    best_mlp: TrialRecord | None = None
    for name in done:
        trial = best_trial(directory / name)
        if trial is None:
            continue
        chosen[name] = trial.config
        if name in MLP_STEPS and (best_mlp is None or trial.best_score() > best_mlp.best_score()):
            best_mlp = trial
    if best_mlp is not None:
        chosen["best_mlp"] = best_mlp.config
    return chosen


def source_checkpoint(step: ReplicationStep, directory: Path, carry: str) -> Path:
    """The network a feature step takes its features from: the best trial of the named earlier steps
    whose configuration matches the study's hand-picked one."""
    match = step.source_match(carry) if step.source_match else {}
    candidates = [
        trial
        for name in step.source_steps(carry)
        if is_experiment_dir(directory / name)
        for trial in [
            best_trial(directory / name, keep=lambda t: all(t.config.get(k) == v for k, v in match.items()))
        ]
        if trial is not None
    ]
    if not candidates:
        raise KeyError(f"no network for {step.name} in {', '.join(step.source_steps(carry))}")
    return max(candidates, key=lambda trial: trial.best_score()).checkpoint


def step_request(
    step: ReplicationStep, request: ReplicateRequest, directory: Path, chosen: Chosen, resume: bool
) -> SweepRequest:
    """The sweep of one step; KeyError when a step it starts from has no result."""
    from scenetune.registry import get_task

    task = get_task(step.task)
    pins = step.pins(chosen, request.carry)
    if "lr_schedule" in task.space.defaults:
        pins = {**STUDY_LR_SCHEDULE, **pins}
    if request.quick:
        pins = {**pins, **QUICK_PINS.get(step.task, {})}
    swept = set(task.space.presets[step.preset].factors)
    pins = {key: value for key, value in pins.items() if key not in swept}  # the step's own factor varies
    source = str(source_checkpoint(step, directory, request.carry)) if step.source_steps else None
    epochs = QUICK_EPOCHS if request.quick else request.epochs
    return SweepRequest(
        task=step.task,
        data=request.data,
        source=source,
        space=step.preset,
        epochs=epochs if task.model_kind is not None else None,
        seed=request.seed,
        pinned=pins,
        val_from_test=request.protocol == "study",
        storage=str(directory),
        name=step.name,
        resume=resume,
        address=request.address,
        verbose=request.verbose,
    )


def _start(request: ReplicateRequest, directory: Path) -> tuple[ReplicateRequest, dict[str, Any]]:
    if request.resume:
        state = read_state(directory / STATE_FILE)
        recorded = {
            **state["request"],
            "resume": True,
            "address": request.address,
            "verbose": request.verbose,
        }
        return ReplicateRequest(**recorded), state
    claim_directory(directory, "replication")
    recorded = {k: v for k, v in vars(request).items() if k not in ("resume", "address", "verbose")}
    state = {"request": {**recorded, "name": directory.name}, "steps": {}, "pins": {}}
    write_state(directory / STATE_FILE, state)
    return request, state


def run_replication(request: ReplicateRequest) -> Path:
    """Run every step not yet done, in the study's order, then write replication.md/.csv/.json."""
    from analysis.replication import write_replication

    directory = check_request(request)
    request, state = _start(request, directory)
    with driver_heartbeat(directory):  # a second --resume is refused while this one runs
        for step in STEPS:
            if state["steps"].get(step.name) == "done":
                continue  # a step that failed or was skipped is tried again when the chain is resumed
            done = [name for name, value in state["steps"].items() if value == "done"]
            resume = is_experiment_dir(directory / step.name)  # killed or failed in this step: continue it
            try:
                sweep = step_request(step, request, directory, chosen_so_far(directory, done), resume)
            except KeyError as missing:
                print(f"scenetune: skipping step {step.name}: {missing.args[0]} has no result")
                state["steps"][step.name] = "skipped"
                write_state(directory / STATE_FILE, state)
                continue
            print(
                f"\n== replication step {step.name}: {step.task} --space {step.preset}, pins {sweep.pinned} =="
            )
            state["steps"][step.name] = "running"
            state["pins"][step.name] = sweep.pinned
            write_state(directory / STATE_FILE, state)
            outcome = run(prepare(sweep))
            state["steps"][step.name] = "done" if outcome.best_config is not None else "failed"
            write_state(directory / STATE_FILE, state)
        summary = write_replication(directory, state)
        print(f"\n{summary}\n")
        print(
            f"replication report: {directory / 'replication.md'} (and .csv, .json); figures: {directory / 'figures'}"
        )
    return directory

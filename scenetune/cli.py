"""The `scenetune` command."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from scenetune.errors import UserError
from scenetune.heartbeat import release_resume_locks

EXIT_USER_ERROR = 2
EXIT_TRIALS_FAILED = 1
EXIT_INTERRUPTED = 130


def parse_value(text: str) -> Any:
    """`--set` values: JSON numbers, booleans and lists; true/false in any case; anything else a string."""
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_pins(assignments: Sequence[str]) -> dict[str, Any]:
    pinned: dict[str, Any] = {}
    for assignment in assignments:
        key, sep, value = assignment.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--set expects KEY=VALUE, got {assignment!r}")
        pinned[key.strip()] = parse_value(value)
    return pinned


def new_output_file(name: str, option: str, suffix: str | None = None) -> Path:
    """Where a command may write a new file: its folder exists and the file does not.

    With `suffix`, a name without it gets it, as numpy's save would add `.npy` on its own.
    """
    path = Path(name)
    if suffix and path.suffix != suffix:
        path = path.with_name(path.name + suffix)
    if not path.parent.is_dir():
        raise UserError(f"{option} {name}: folder {path.parent} does not exist")
    if path.exists():
        raise UserError(
            f"{option} {name}: {path} already exists; choose another name (nothing was overwritten)"
        )
    return path


def read_images_or_fail(paths: Sequence[str], size: int):
    """Decode image files into one array, or one sentence naming the first that cannot be read."""
    import numpy as np
    from PIL import Image

    from scenetune.data import load_images

    arrays = []
    for path in paths:
        try:
            arrays.append(load_images([path], size))
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
            raise UserError(f"cannot read image {path}: {error}") from None
    return np.concatenate(arrays)


VALIDATION_OPTIONS = ("val_fraction", "val_from_test")  # one or the other


def _add_sweep_parser(commands: argparse._SubParsersAction) -> None:
    """`scenetune sweep`, its arguments generated from the sweep options (scenetune.request)."""
    from scenetune.request import SweepRequest

    sweep = commands.add_parser("sweep", help="run a hyperparameter sweep of one task")
    validation = sweep.add_mutually_exclusive_group()
    for option in dataclasses.fields(SweepRequest):
        flag, settings = option.metadata["flag"], dict(option.metadata["argparse"])
        if not flag.startswith("-"):
            sweep.add_argument(option.name, help=option.metadata["help"])
            continue
        if option.name not in ("pinned", "val_from_test"):
            settings.setdefault("default", option.default)
        group = validation if option.name in VALIDATION_OPTIONS else sweep
        group.add_argument(flag, dest=option.name, help=option.metadata["help"], **settings)


def sweep_request(args: argparse.Namespace):
    """The request that a parsed `scenetune sweep` command line asks for."""
    from scenetune.request import SweepRequest

    values = {option.name: getattr(args, option.name) for option in dataclasses.fields(SweepRequest)}
    values["pinned"] = parse_pins(values["pinned"] or [])
    values["val_from_test"] = values["val_from_test"] == "test"
    return SweepRequest(**values)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scenetune", description="Hyperparameter search for image-classification studies on Ray Tune."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    _add_sweep_parser(commands)
    presets = commands.add_parser("presets", help="list the search spaces of each task")
    presets.add_argument("task", nargs="?")
    layer = commands.add_parser(
        "layer-output", help="activations of one layer of a trained model for some images"
    )
    layer.add_argument(
        "checkpoint", help="a checkpoint directory, or an experiment directory (its best trial)"
    )
    layer.add_argument("images", nargs="+", help="image files")
    layer.add_argument("--layer", required=True, help="layer name, e.g. second, third, output")
    layer.add_argument("--out", help="where to write the array (.npy); default layer-output-LAYER.npy")
    table = commands.add_parser("table", help="the study's comparison table of one or more experiments")
    table.add_argument("experiments", nargs="+", metavar="EXPERIMENT_DIR")
    table.add_argument("--format", choices=["md", "csv", "latex"], default="md")
    table.add_argument(
        "--by",
        metavar="PARAM",
        help="one table grouped by this parameter, instead of one block per experiment",
    )
    table.add_argument("--top", type=int, metavar="N", help="the N best trials of each experiment")
    plot = commands.add_parser(
        "plot", help="learning curves and sweep figures of an experiment (PNG and SVG)"
    )
    plot.add_argument("experiment", metavar="EXPERIMENT_DIR")
    plot.add_argument("--out", help="folder for the figures (default EXPERIMENT_DIR/figures)")
    importance = commands.add_parser("importance", help="hyperparameter importance (fANOVA and PED-ANOVA)")
    importance.add_argument("experiment", metavar="EXPERIMENT_DIR")
    importance.add_argument("--out", help="folder for the bar chart (default EXPERIMENT_DIR/figures)")
    study = commands.add_parser(
        "study", help="run the whole study: every task, then its comparison and conclusions"
    )
    study.add_argument(
        "--data", default="digits", help="`digits` (built in) or a folder DIR/{train,test}/<class>/<image>"
    )
    pace = study.add_mutually_exclusive_group()
    pace.add_argument("--quick", action="store_true", help="a few small trials per task: minutes on a laptop")
    pace.add_argument(
        "--budget",
        type=float,
        dest="budget_s",
        metavar="SECONDS",
        help="wall-clock budget shared out across the tasks (default 3600)",
    )
    study.add_argument("--storage", default="results")
    study.add_argument("--name", help="study name (default study-DATE-TIME)")
    study.add_argument("--resume", action="store_true", help="continue the interrupted study --name")
    study.add_argument("--seed", type=int, default=0)
    study.add_argument(
        "--refit",
        type=int,
        default=3,
        metavar="N",
        help="train each network step's best configuration again with N seeds (default 3; 0: none)",
    )
    study.add_argument("--address", help="join a running Ray cluster")
    study.add_argument("--verbose", action="store_true")
    replicate = commands.add_parser(
        "replicate",
        help="rerun the study's chain of one-factor experiments and compare with its published tables",
    )
    replicate.add_argument(
        "--data", default="digits", help="`digits` (built in) or a folder DIR/{train,test}/<class>/<image>"
    )
    replicate.add_argument(
        "--protocol",
        default="study",
        help="`study` (the test folder as validation, as the study did; the default) or `honest` "
        "(validation carved from train, test reported apart)",
    )
    replicate.add_argument(
        "--carry",
        default="study",
        help="where the study fixed a choice by hand: `study` follows it (the default), `best` takes the best value found",
    )
    replicate.add_argument("--epochs", type=int, help="epochs per network trial (default: the task's, 20)")
    replicate.add_argument(
        "--quick", action="store_true", help="small networks, 2 epochs: minutes on a laptop"
    )
    replicate.add_argument("--storage", default="results")
    replicate.add_argument("--name", help="replication name (default replication-DATE-TIME)")
    replicate.add_argument(
        "--resume", action="store_true", help="continue the interrupted replication --name"
    )
    replicate.add_argument("--seed", type=int, default=0)
    replicate.add_argument("--address", help="join a running Ray cluster")
    replicate.add_argument("--verbose", action="store_true")
    dashboard = commands.add_parser("dashboard", help="a live local web page over every experiment and study")
    dashboard.add_argument("root", nargs="?", default="results", metavar="RESULTS_ROOT")
    dashboard.add_argument("--host", default="127.0.0.1")
    dashboard.add_argument("--port", type=int, default=8050)
    report = commands.add_parser(
        "report", help="the dashboard's tables and charts as one self-contained HTML file"
    )
    report.add_argument("paths", nargs="+", metavar="EXPERIMENT_OR_STUDY_DIR")
    report.add_argument("-o", "--output", required=True, metavar="REPORT.html")
    return parser


LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def command_dashboard(args: argparse.Namespace) -> int:
    import uvicorn

    from analysis.dashboard import LOOPBACK_HOST_NAMES, create_app

    root = Path(args.root)
    if not root.is_dir():
        raise UserError(
            f"results folder {root} does not exist; run a sweep or study first, or name the folder"
        )
    allowed_hosts = LOOPBACK_HOST_NAMES
    if args.host not in LOOPBACK_HOSTS:
        allowed_hosts = ("*",)  # reached by whatever name the network gives this machine
        print(
            f"scenetune: warning: listening on {args.host}: the results become visible to the network",
            file=sys.stderr,
        )
    print(
        f"scenetune dashboard: http://{args.host}:{args.port}/ (results in {root.resolve()}; Ctrl-C stops it)",
        flush=True,
    )
    uvicorn.run(create_app(root, allowed_hosts), host=args.host, port=args.port, log_level="warning")
    return 0


def command_report(args: argparse.Namespace) -> int:
    from analysis.dashboard import build_report

    for path in args.paths:
        if not Path(path).is_dir():
            raise UserError(f"{path} is not a folder")
    output = new_output_file(args.output, "-o")
    report = build_report([Path(p) for p in args.paths])
    with output.open("x") as handle:  # exclusive: never replaces a file that appeared meanwhile
        handle.write(report)
    print(f"report: {output}")
    return 0


def _request(kind: type, args: argparse.Namespace):
    """A command's request from its parsed arguments: one field per option of the same name."""
    return kind(**{field.name: getattr(args, field.name) for field in dataclasses.fields(kind)})


def command_study(args: argparse.Namespace) -> int:
    from scenetune.study import StudyRequest, run_study

    run_study(_request(StudyRequest, args))
    return 0


def command_replicate(args: argparse.Namespace) -> int:
    from scenetune.replicate import ReplicateRequest, run_replication

    run_replication(_request(ReplicateRequest, args))
    return 0


def _load_experiments(paths: Sequence[str]):
    from analysis.results import load_experiment
    from scenetune.experiment import is_experiment_dir

    for path in paths:
        if not Path(path).is_dir():
            raise UserError(f"experiment directory {path} does not exist")
        if not is_experiment_dir(Path(path)):
            raise UserError(f"{path} is not a scenetune experiment (it has no scenetune.json)")
    return [load_experiment(Path(path)) for path in paths]


def command_table(args: argparse.Namespace) -> int:
    from analysis.tables import combined_table, render, summary_table
    from scenetune.environment import differing_environments
    from scenetune.experiment import PRUNED_FILE, pruned_configs

    experiments = _load_experiments(args.experiments)
    unique_names = len({e.name for e in experiments}) == len(experiments)
    environments = differing_environments(
        {(e.name if unique_names else str(e.path)): e.record.get("environment") for e in experiments}
    )
    if environments:  # on stderr: the table itself stays what --format asks for
        print(f"scenetune: {environments}", file=sys.stderr)
    if args.by or args.format == "csv" or len(experiments) == 1 and args.format != "md":
        print(render(combined_table(experiments, args.by, args.top), args.format))
        return 0
    for experiment in experiments:
        if args.format == "md":
            print(
                f"### {experiment.name} ({experiment.task}, {experiment.space}, {len(experiment.trials)} trials)\n"
            )
        print(render(summary_table(experiment, args.top), args.format))
        pruned = pruned_configs(experiment.path)
        if pruned:
            print(
                f"\n{len(pruned)} configuration(s) pruned before they started: {experiment.path / PRUNED_FILE}"
            )
        print()
    return 0


def command_plot(args: argparse.Namespace) -> int:
    from analysis.plots import plot_experiment

    (experiment,) = _load_experiments([args.experiment])
    out = Path(args.out) if args.out else experiment.path / "figures"
    written = plot_experiment(experiment, out)
    for path in written:
        print(path)
    if not written:
        print(f"{experiment.path} has no results to plot yet")
    return 0


def command_importance(args: argparse.Namespace) -> int:
    from analysis.importance import importance_chart, importance_table

    (experiment,) = _load_experiments([args.experiment])
    try:
        table = importance_table(experiment)
    except ValueError as error:
        raise UserError(str(error)) from None
    print(table.round(4).to_markdown())
    for path in importance_chart(
        table, experiment, Path(args.out) if args.out else experiment.path / "figures"
    ):
        print(path)
    return 0


def command_presets(args: argparse.Namespace) -> int:
    from scenetune.registry import TASKS, get_task

    tasks = [get_task(args.task)] if args.task else list(TASKS.values())
    for task in tasks:
        space = task.space
        print(f"{task.name}: {space.description}")
        print(f"  optuna (default)  joint search with ASHA over {space.optuna_description}")
        for preset in space.presets.values():
            count = "one trial per value" if callable(preset.points) else f"{len(preset.points)} trials"
            print(f"  {preset.name:<17} {preset.description} ({count})")
    return 0


def near_best_note(val_scores: list[float], validation_images: int, refit: bool) -> str | None:
    """Where other trials score within one standard error of the best on validation, say so: which
    of them the search calls best rests on a few images."""
    from analysis.uncertainty import near_best

    near = near_best(val_scores, validation_images)
    if not near.count:
        return None
    quote = (
        "the refit's interval below is the number to quote" if refit else "--refit 3 gives a number to quote"
    )
    return (
        f"scenetune: {near.count} other trial(s) score within one standard error of the best on validation "
        f"({near.margin:.3f}, {near.margin * validation_images:.0f} of {validation_images} images), so which of them "
        f"is best rests on a few images; {quote}"
    )


def command_sweep(args: argparse.Namespace) -> int:
    from scenetune.experiment import describe_config
    from scenetune.sweep import prepare, run

    request = sweep_request(args)
    plan = prepare(request)
    action = "resuming" if plan.restoring else "sweeping"
    sizes = plan.trial_data.split_sizes()
    print(
        f"scenetune: {action} {plan.task.name} ({plan.request.space}, {plan.samples} trials, {plan.epochs} epochs) on "
        f"{plan.request.data}: {len(plan.trial_data.classes)} classes, "
        f"{sizes['train']} train / {sizes['val']} val / {sizes['test']} test images"
    )
    outcome = run(plan)
    print(f"experiment: {outcome.experiment} ({outcome.trials} trials)")
    if outcome.best_config is not None:
        from analysis.uncertainty import checkpoint_interval

        interval = checkpoint_interval(outcome.best_checkpoint)
        stated = (
            f" (95% CI {interval[0]:.4f}-{interval[1]:.4f} over {sizes['test']} test images)"
            if interval
            else ""
        )
        print(
            f"best trial {outcome.best_trial}: val_acc {outcome.best_val_acc:.4f}, test_acc {outcome.best_test_acc:.4f}"
            f"{stated} ({describe_config(outcome.best_config, plan.task.space.defaults)})"
        )
        if outcome.best_checkpoint:
            print(f"best checkpoint: {outcome.best_checkpoint}")
        scored_on = outcome.val_images or sizes["val"]  # cross-validated SVM trials: train + validation
        near_best = near_best_note(outcome.val_scores, scored_on, bool(plan.request.refit))
        if near_best:
            print(near_best)
    elif outcome.trials:
        print(
            "scenetune: no trial scored on validation (each diverged, failed or stopped before its first "
            f"score); `scenetune table {outcome.experiment}` shows how each ended"
        )
    if outcome.pruned:
        worst = max(outcome.pruned, key=lambda entry: entry["estimated_epoch_seconds"])
        print(
            f"scenetune: {len(outcome.pruned)} configuration(s) pruned before they started: their "
            f"{worst.get('estimated_part', 'first epoch')} was estimated past --max-trial-seconds {worst['max_trial_seconds']:g} (e.g. "
            f"{describe_config(worst['config'], plan.task.space.defaults)}: {worst['estimated_epoch_seconds']:.0f} s)"
        )
    if outcome.refits:
        from analysis.uncertainty import refit_summary

        summary = refit_summary(Path(outcome.experiment))
        if summary is not None:
            print(f"refit: {summary.describe()}")
    if outcome.unfinished and outcome.budget_reached:
        print(
            f"scenetune: the time budget ended the sweep with {outcome.unfinished} of {plan.samples} trials not run to their end"
        )
    elif outcome.unfinished:
        resume = f"scenetune sweep {plan.task.name} --storage {plan.storage_path} --name {plan.name} --resume"
        print(
            f"scenetune: the sweep stopped with {outcome.unfinished} of {plan.samples} trials unfinished; "
            f"everything so far is saved. Continue it with: {resume}",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    if outcome.errors:
        print(
            f"scenetune: {outcome.errors} of {outcome.trials} trials failed, e.g.: {outcome.error_messages[0]}",
            file=sys.stderr,
        )
        return EXIT_TRIALS_FAILED
    return 0


def command_layer_output(args: argparse.Namespace) -> int:
    import numpy as np

    from scenetune.sources import resolve_checkpoint
    from trainables.checkpoints import load_model
    from trainables.models import check_layer_name, layer_output

    checkpoint, _ = resolve_checkpoint(Path(args.checkpoint))
    out = new_output_file(args.out or f"layer-output-{args.layer}.npy", "--out", suffix=".npy")
    missing = [p for p in args.images if not Path(p).is_file()]
    if missing:
        raise UserError(f"image file {missing[0]} does not exist")
    model, description = load_model(checkpoint)
    try:
        check_layer_name(model, args.layer)
    except ValueError as error:
        raise UserError(str(error)) from None
    images = read_images_or_fail(args.images, int(description["image_size"]))
    activations = layer_output(model, images, args.layer).cpu().numpy()
    with out.open("xb") as handle:  # exclusive: never replaces a file that appeared meanwhile
        np.save(handle, activations)
    print(f"checkpoint: {checkpoint}")
    print(f"layer {args.layer}: shape {tuple(activations.shape)} -> {out}")
    return 0


COMMANDS = {
    "sweep": command_sweep,
    "presets": command_presets,
    "layer-output": command_layer_output,
    "table": command_table,
    "plot": command_plot,
    "importance": command_importance,
    "study": command_study,
    "replicate": command_replicate,
    "dashboard": command_dashboard,
    "report": command_report,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    started_here = not _ray_running()
    try:
        return COMMANDS[args.command](args)
    except UserError as error:
        print(f"scenetune: error: {error}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print(
            "\nscenetune: interrupted; continue with the same command plus --name NAME --resume",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    finally:
        release_resume_locks()
        if started_here:  # a Ray instance the caller started (a notebook, a test session) stays up
            _stop_ray()


def _ray_running() -> bool:
    ray = sys.modules.get("ray")
    return ray is not None and ray.is_initialized()


def _stop_ray() -> None:
    """Stop the Ray instance a command started (or leave the cluster it joined) before the interpreter exits.

    An explicit shutdown takes about a second here; leaving it to Ray's exit hook took four.
    """
    if _ray_running():
        sys.modules["ray"].shutdown()

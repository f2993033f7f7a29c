"""Assemble and run a sweep: validate everything, load the data once, build the Tuner, summarise.

Everything a user can get wrong is checked in `prepare` before Ray starts; `run` only executes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import sys
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scenetune import __version__
from scenetune.data import BUILTIN_DIGITS, TrialData, class_count, load_dataset, make_trial_data
from scenetune.environment import arithmetic_differences, current_environment, start_probing_torch
from scenetune.errors import UserError
from scenetune.experiment import (
    EXPERIMENT_FILE,
    PRUNED_FILE,
    SELECT_BY_CROSS_VALIDATION,
    Objective,
    is_accuracy_score,
    pruned_configs,
    unfinished_trials,
)
from scenetune.experiment import trial_dirname as format_trial_dirname
from scenetune.heartbeat import driver_heartbeat, refuse_if_running
from scenetune.recovery import mend_for_resume, refusing_a_fresh_start
from scenetune.registry import Task, accepted_source_kinds, get_task
from scenetune.request import RECORDED_FIELDS, SweepRequest
from scenetune.watchdog import children, start_watchdog
from search_spaces.base import OPTUNA_SPACE, prior_points

OBJECTIVE = Objective("val_acc", "max")
METRIC, MODE = OBJECTIVE.metric, OBJECTIVE.mode
DEFAULT_OPTUNA_SAMPLES = 20
# Without --max-trial-seconds, no trial may take more than this share of the sweep's --time-budget.
TRIAL_SHARE_OF_BUDGET = 0.25
# Experiment state is saved this often (seconds), so a killed sweep loses little when resumed.
EXPERIMENT_STATE_PERIOD_S = "5"


SAMPLERS = ("tpe", "gp", "random")
EARLY_STOPPING = ("asha", "none")


@dataclass
class SweepPlan:
    request: SweepRequest
    task: Task
    experiment_dir: Path | None  # None for remote storage (URIs)
    storage_path: str
    name: str
    trial_data: TrialData
    inputs: Any  # what every trial receives through the object store
    context: dict[str, Any]
    fingerprint: str
    configs: list[dict[str, Any]]  # preset grid points (empty for the optuna space)
    constants: dict[str, Any]
    samples: int
    epochs: int
    restoring: bool


def _is_uri(storage: str) -> bool:
    return "://" in storage


def default_name(task: str, space: str) -> str:
    return f"{task}-{space}-{time.strftime('%Y%m%d-%H%M%S')}"


def _check_numbers(request: SweepRequest) -> None:
    if request.samples is not None and request.samples < 1:
        raise UserError(f"--samples must be at least 1, got {request.samples}")
    if request.epochs is not None and request.epochs < 1:
        raise UserError(f"--epochs must be at least 1, got {request.epochs}")
    if request.cpus_per_trial <= 0:
        raise UserError(f"--cpus-per-trial must be positive, got {request.cpus_per_trial}")
    if request.gpus_per_trial < 0:
        raise UserError(f"--gpus-per-trial cannot be negative, got {request.gpus_per_trial}")
    if request.max_concurrent is not None and request.max_concurrent < 1:
        raise UserError(f"--max-concurrent must be at least 1, got {request.max_concurrent}")
    if request.refit < 0:
        raise UserError(f"--refit must be 0 or more seeds, got {request.refit}")
    if request.refit and request.storage and _is_uri(request.storage):
        raise UserError(
            "--refit needs a local --storage folder (the refit trials live inside the experiment)"
        )
    if request.max_trial_seconds is not None and request.max_trial_seconds <= 0:
        raise UserError(f"--max-trial-seconds must be positive, got {request.max_trial_seconds:g}")
    if request.time_budget_s is not None and request.time_budget_s <= 0:
        raise UserError(f"--time-budget must be positive, got {request.time_budget_s}")
    if request.sampler not in SAMPLERS:
        raise UserError(f"--sampler must be one of {', '.join(SAMPLERS)}, got {request.sampler!r}")
    if request.early_stopping not in EARLY_STOPPING:
        raise UserError(
            f"--early-stopping must be one of {', '.join(EARLY_STOPPING)}, got {request.early_stopping!r}"
        )


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_pin_type(key: str, value: Any, default: Any) -> None:
    """A pinned value has the type of the parameter's default (a float parameter also takes an integer)."""
    expected = {
        bool: ("true or false", lambda v: isinstance(v, bool)),
        int: ("an integer", lambda v: isinstance(v, int) and not isinstance(v, bool)),
        float: ("a number", _is_number),
    }.get(type(default))
    if expected is not None and not expected[1](value):
        raise UserError(
            f"--set {key}={value}: {key} takes {expected[0]}, like its default {json.dumps(default)}"
        )


def _check_space_and_pins(request: SweepRequest, task: Task) -> None:
    space = task.space
    if request.space not in space.space_names:
        raise UserError(
            f"unknown space {request.space!r} for task {task.name}; choose one of: {', '.join(space.space_names)}"
        )
    searched = request.sampler != "tpe" or request.early_stopping != "asha" or request.no_prior
    if searched and request.space != OPTUNA_SPACE:
        raise UserError(
            f"--sampler, --early-stopping and --no-prior apply to the optuna space; preset {request.space!r} runs its grid to the end"
        )
    for key, value in request.pinned.items():
        if key not in space.defaults:
            raise UserError(
                f"--set {key}: {task.name} has no parameter {key!r}; its parameters are: {', '.join(space.defaults)}"
            )
        _check_pin_type(key, value, space.defaults[key])
    epochs = request.pinned.get("epochs")
    if epochs is not None and epochs < 1:
        raise UserError(f"--set epochs={epochs}: a trial needs at least 1 epoch")
    if request.space != OPTUNA_SPACE:
        swept = set(space.presets[request.space].factors) & set(request.pinned)
        if swept:
            raise UserError(
                f"--set {', '.join(sorted(swept))} conflicts with preset {request.space!r}, which sweeps it"
            )


def _recorded(experiment_dir: Path) -> dict[str, Any]:
    path = experiment_dir / EXPERIMENT_FILE
    if not path.is_file():
        raise UserError(
            f"{experiment_dir} is not a scenetune experiment (no {EXPERIMENT_FILE}); nothing to resume"
        )
    return json.loads(path.read_text())


def _apply_recorded(request: SweepRequest, recorded: dict[str, Any]) -> SweepRequest:
    return dataclasses.replace(
        request, **{key: recorded["request"][key] for key in RECORDED_FIELDS if key in recorded["request"]}
    )


MAX_NAME_LENGTH = 200


def check_name(name: str, option: str = "--name") -> str:
    """An experiment or study name is one folder inside --storage: no separators, no `..`."""
    if (
        not name.strip()
        or name in (".", "..")
        or any(c in name for c in "/\\\0")
        or len(name) > MAX_NAME_LENGTH
    ):
        raise UserError(
            f"{option} {name!r} must be one folder name of at most {MAX_NAME_LENGTH} characters, without '/', '\\' or '..'"
        )
    return name


def _experiment_location(request: SweepRequest) -> tuple[str, str, Path | None]:
    name = check_name(request.name) if request.name is not None else default_name(request.task, request.space)
    if _is_uri(request.storage):
        return request.storage, name, None
    storage = Path(request.storage).expanduser().resolve()
    return str(storage), name, storage / name


def _resolve_source(request: SweepRequest, task: Task):
    kinds = accepted_source_kinds(task)
    if request.source is None:
        if task.source_required:
            raise UserError(
                f"{task.name} needs --from, a {' or '.join(kinds)} experiment or checkpoint to take features from"
            )
        return None
    if not kinds:
        raise UserError(f"{task.name} trains from pixels and takes no --from")
    from scenetune.sources import resolve_source  # torch: only sweeps with --from need it in the driver

    return resolve_source(request.source, kinds, task.name)


def _with_source_data(request: SweepRequest, source) -> SweepRequest:
    """Feature tasks default to the data and split their source network was trained on. `--val test`
    is honoured (the network never saw the test folder); another carved split is refused, since its
    validation images would include some the network trained on."""
    if request.data is not None:
        return request
    recorded = (source.record or {}).get("request") if source is not None else None
    if recorded is None:
        return dataclasses.replace(request, data=BUILTIN_DIGITS)
    if request.val_from_test:
        return dataclasses.replace(request, data=recorded["data"])
    default_fraction = SweepRequest.__dataclass_fields__["val_fraction"].default
    if request.val_fraction != default_fraction and (
        recorded["val_from_test"] or request.val_fraction != recorded["val_fraction"]
    ):
        trained_with = (
            "--val test" if recorded["val_from_test"] else f"--val-fraction {recorded['val_fraction']:g}"
        )
        raise UserError(
            f"--val-fraction {request.val_fraction:g} differs from the split the --from network was "
            f"trained with ({trained_with}), so validation would hold images the network trained on; "
            "leave it out to use the network's split, or give --val test"
        )
    keys = ("data", "val_fraction", "val_from_test")
    return dataclasses.replace(request, **{key: recorded[key] for key in keys})


def _sweep_context(source) -> dict[str, Any]:
    if source is None:
        return {"has_source": False}
    return {
        "has_source": True,
        "layers": source.hidden_layers,
        "image_size": int(source.description["image_size"]),
    }


@dataclass
class _Location:
    request: SweepRequest  # with the recorded settings applied when resuming
    storage_path: str
    name: str
    experiment_dir: Path | None
    recorded: dict[str, Any] | None  # scenetune.json of the experiment being resumed


def _locate(request: SweepRequest) -> _Location:
    """Where the experiment lives; resuming, its record, whose settings replace the command line's."""
    if request.resume and not request.name:
        raise UserError("--resume needs --name, the name of the experiment to continue")
    storage_path, name, experiment_dir = _experiment_location(request)
    recorded = None
    if experiment_dir is not None:
        if request.resume:
            if not experiment_dir.is_dir():
                raise UserError(f"cannot resume: experiment directory {experiment_dir} does not exist")
            refuse_if_running(experiment_dir, "experiment")
            recorded = _recorded(experiment_dir)
            request = _apply_recorded(request, recorded)
        elif experiment_dir.exists():
            raise UserError(
                f"experiment directory {experiment_dir} already exists; pass --resume to continue it or choose another --name"
            )
    return _Location(request, storage_path, name, experiment_dir, recorded)


def _grid(
    request: SweepRequest, task: Task, context: dict[str, Any]
) -> tuple[list[dict[str, Any]], dict[str, Any], int, int]:
    """The preset's grid points (none for the optuna space), the constants every trial gets, the
    number of trials and the epochs per trial."""
    candidates = (request.epochs, request.pinned.get("epochs"), task.space.defaults.get("epochs"))
    epochs = int(next((e for e in candidates if e is not None), 1))
    constants = {"seed": request.seed, "epochs": epochs}
    limit = request.max_trial_seconds or (
        request.time_budget_s * TRIAL_SHARE_OF_BUDGET if request.time_budget_s else None
    )
    if limit is not None:
        constants["max_trial_seconds"] = limit
    if task.cross_validates_selection and not request.val_from_test:  # never pool the test folder
        constants[SELECT_BY_CROSS_VALIDATION] = True
    if request.space == OPTUNA_SPACE:
        return [], constants, request.samples or DEFAULT_OPTUNA_SAMPLES, epochs
    configs = [
        {**config, **constants}
        for config in task.space.preset_configs(request.space, request.pinned, context)
    ]
    if not configs:
        raise UserError(
            f"preset {request.space!r} has no value that fits the pinned parameters {request.pinned}"
        )
    return configs, constants, len(configs), epochs


def _check_configs(
    task: Task, configs: list[dict[str, Any]], n_classes: int, context: dict[str, Any]
) -> None:
    for config in configs:
        try:
            task.check_config(config, n_classes, context)
        except (ValueError, TypeError, KeyError) as error:
            raise UserError(f"invalid configuration for {task.name}: {error}") from None


def _load_trial_data(
    request: SweepRequest, image_sizes: set[int], source, location: _Location
) -> tuple[TrialData, str, str]:
    """The dataset decoded at every size the trials need, split; its fingerprint and a key for caches."""
    cache_dir = Path(request.cache_dir) if request.cache_dir else None
    dataset = load_dataset(request.data, image_sizes, cache_dir, request.skip_bad_images)
    if location.recorded is not None and not dataset.matches(location.recorded["data"]["fingerprint"]):
        raise UserError(
            f"the dataset {request.data} changed since experiment {location.experiment_dir} started; "
            "resume would mix results, so start a new experiment"
        )
    split_seed = request.seed
    if source is not None and source.record is not None:
        split_seed = source.record["request"]["seed"]  # the source network's own train/val split
    trial_data = make_trial_data(dataset, request.val_fraction, request.val_from_test, split_seed)
    return (
        trial_data,
        dataset.fingerprint,
        f"{dataset.fingerprint}|{request.val_fraction}|{request.val_from_test}|{split_seed}",
    )


def prepare(request: SweepRequest) -> SweepPlan:
    """Check the request and load the data; raises UserError before anything is started or written."""
    location = _locate(request)
    request = location.request
    task = get_task(request.task)
    _check_numbers(request)
    _check_space_and_pins(request, task)
    source = _resolve_source(request, task)
    request = _with_source_data(request, source)
    n_classes = class_count(request.data)
    context = _sweep_context(source)
    configs, constants, samples, epochs = _grid(request, task, context)
    _check_configs(
        task, configs or [{**task.space.defaults, **request.pinned, **constants}], n_classes, context
    )

    def values(key: str) -> list[Any]:
        return task.space.possible_values(key, request.space, request.pinned, context)

    image_sizes = set(values("image_size")) if "image_size" in task.space.defaults else set()
    if "image_size" in context:
        image_sizes.add(context["image_size"])
    trial_data, fingerprint, data_key = _load_trial_data(request, image_sizes, source, location)
    return SweepPlan(
        request=request,
        task=task,
        experiment_dir=location.experiment_dir,
        storage_path=location.storage_path,
        name=location.name,
        trial_data=trial_data,
        inputs=task.build_inputs(trial_data, source, values, data_key, request.cache_dir),
        context=context,
        fingerprint=fingerprint,
        configs=configs,
        constants=constants,
        samples=samples,
        epochs=epochs,
        restoring=request.resume,
    )


def experiment_record(plan: SweepPlan) -> dict[str, Any]:
    """What scenetune.json holds: enough to understand, compare and resume the experiment."""
    any_size = next(iter(plan.trial_data.splits))
    splits = plan.trial_data.splits[any_size]
    return {
        "scenetune_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": sys.argv,
        "task": plan.task.name,
        "space": plan.request.space,
        "metric": METRIC,
        "mode": MODE,
        "seed": plan.request.seed,
        "samples": plan.samples,
        "epochs": plan.epochs,
        "defaults": plan.task.space.defaults,
        "data": {
            "source": plan.request.data,
            "fingerprint": plan.fingerprint,
            "classes": plan.trial_data.classes,
            "image_sizes": sorted(plan.trial_data.splits),
            "validation": "test folder"
            if plan.request.val_from_test
            else f"{plan.request.val_fraction:g} of train, stratified",
            "sizes": {name: len(split) for name, split in splits.items()},
        },
        "request": dataclasses.asdict(plan.request),
        "environment": current_environment(),
    }


def _write_record(plan: SweepPlan) -> None:
    """Claim the experiment folder and write its record. Creating the folder is atomic, so of two sweeps
    started at once with the same --name exactly one goes on; the other stops before writing anything."""
    if plan.experiment_dir is None:
        return
    plan.experiment_dir.parent.mkdir(parents=True, exist_ok=True)
    try:
        plan.experiment_dir.mkdir()
    except FileExistsError:
        raise UserError(
            f"experiment directory {plan.experiment_dir} already exists (another sweep created it just now); choose another --name"
        ) from None
    (plan.experiment_dir / EXPERIMENT_FILE).write_text(
        json.dumps(experiment_record(plan), indent=2, default=str)
    )


def start_ray(address: str | None = None, verbose: bool = False) -> None:
    """Start a local Ray instance (or join the cluster at `address`) as every sweep runs it; a no-op
    when Ray is already running in this process."""
    import optuna
    import ray

    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", EXPERIMENT_STATE_PERIOD_S)
    if not verbose:
        # The legacy console output honours verbose=0 completely; the new one still prints a banner.
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
        logging.getLogger("ray").setLevel(logging.ERROR)
        logging.getLogger("ray.tune").setLevel(logging.CRITICAL)  # failures are summarised by scenetune
    local = address is None and not ray.is_initialized()
    before = children() if local else set()
    with _loopback_only(address is None):
        ray.init(
            address=address,
            include_dashboard=False,
            log_to_driver=verbose,
            logging_level=logging.INFO if verbose else logging.ERROR,
            ignore_reinit_error=True,
        )
    if local:  # a driver killed with -9 cannot shut Ray down: the watchdog does it instead
        start_watchdog(children() - before)


@contextlib.contextmanager
def _loopback_only(enabled: bool) -> Iterator[None]:
    """A local Ray instance whose services listen on 127.0.0.1 only, not on every interface.

    Ray binds its servers to loopback when it runs without cluster support (its switch
    RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER, read once at import); a local sweep needs no cluster, so the
    switch is turned off while ray.init starts the node, and only then.
    """
    from ray._private import ray_constants

    if not enabled or not hasattr(ray_constants, "ENABLE_RAY_CLUSTER"):
        yield
        return
    saved = ray_constants.ENABLE_RAY_CLUSTER
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved


def _check_resources(request: SweepRequest) -> None:
    """A trial must fit on one node, or Ray would wait for it forever; say what the cluster has instead."""
    import ray

    nodes = [node.get("Resources", {}) for node in ray.nodes() if node.get("Alive")]
    largest_cpus = max((node.get("CPU", 0.0) for node in nodes), default=0.0)
    largest_gpus = max((node.get("GPU", 0.0) for node in nodes), default=0.0)
    if request.cpus_per_trial > largest_cpus:
        raise UserError(
            f"--cpus-per-trial {request.cpus_per_trial:g} is more than the largest node's {largest_cpus:g} CPU(s) "
            f"({len(nodes)} node(s), {ray.cluster_resources().get('CPU', 0.0):g} CPUs in all)"
        )
    if request.gpus_per_trial <= 0:
        return
    if largest_gpus == 0:
        raise UserError(
            f"--gpus-per-trial {request.gpus_per_trial:g} asks for GPUs, but the Ray cluster has none"
        )
    if request.gpus_per_trial > largest_gpus:
        raise UserError(
            f"--gpus-per-trial {request.gpus_per_trial:g} is more than the largest node's {largest_gpus:g} GPU(s)"
        )


def _default_concurrency(request: SweepRequest) -> int:
    import ray

    cpus = ray.cluster_resources().get("CPU", 1.0)
    return max(1, int(cpus // request.cpus_per_trial))


# Optuna's model-based samplers draw their first 10 trials at random. A search that starts from the
# priors already holds the study's good points, so where ASHA stops weak trials after an epoch, TPE
# and the GP sampler model the space after a few random trials beside them: TPE's first proposals
# then lie around the best prior, where the study's one-factor improvements are (measurement 4: the
# presets' best reached after 0.40 / 0.24 / 0.58 of their compute, against 0.53 / 0.36 / 0.63 with
# TPE's 10 random trials). A trial of one step (an SVM fit) cannot be stopped early, and a model of
# the space from 5 or 6 such results sent TPE next to the best prior (measurement 7: two dense-SIFT
# BoVW searches stayed at the defaults, 5.2 and 3.7 points below random search's best, from its 6th
# and 7th draws), so those searches keep the 10 random trials.
COLD_START_RANDOM_TRIALS = 10
RANDOM_TRIALS_AFTER_PRIORS = 4


def random_start(priors: int, stopped_early: bool) -> int:
    """How many trials, the priors included, a model-based sampler takes before it models the space."""
    if priors and stopped_early:
        return priors + RANDOM_TRIALS_AFTER_PRIORS
    return max(COLD_START_RANDOM_TRIALS, priors + RANDOM_TRIALS_AFTER_PRIORS)


def make_sampler(kind: str, seed: int, priors: int = 0, stopped_early: bool = True):
    """Optuna's sampler for `--sampler`. TPE models the parameters jointly, grouped by which of them a
    trial has (dropout's rate exists only with dropout on), and counts trials still running as bad
    results, so that parallel trials are not handed the same region of the space. The GP sampler
    (Gaussian-process Bayesian optimisation, for small trial budgets) models the parameters every
    trial has and draws the conditional ones at random. `priors`: how many known configurations the
    search evaluates first; `stopped_early`: whether ASHA can stop a weak trial after its first epoch."""
    from optuna.exceptions import ExperimentalWarning
    from optuna.samplers import GPSampler, RandomSampler, TPESampler

    if kind == "random":
        return RandomSampler(seed=seed)
    startup = random_start(priors, stopped_early)
    if kind == "gp":
        return GPSampler(seed=seed, n_startup_trials=startup, warn_independent_sampling=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        return TPESampler(
            seed=seed, n_startup_trials=startup, multivariate=True, group=True, constant_liar=True
        )


def _validation_images(plan: SweepPlan) -> int | None:
    """How many images a trial's val_acc is scored on (ASHA's floor under the priors is one standard
    error of such a score); None where selection cross-validates, scoring other images."""
    if plan.constants.get(SELECT_BY_CROSS_VALIDATION):
        return None
    any_size = next(iter(plan.trial_data.splits))
    return len(plan.trial_data.splits[any_size]["val"])


def build_tuner(plan: SweepPlan):
    """The Tuner for a plan: OptunaSearch + ASHA for the optuna space, the preset grid otherwise."""
    from ray import tune
    from ray.tune.schedulers import FIFOScheduler
    from ray.tune.search import BasicVariantGenerator, ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch

    from scenetune.progress import ProgressLine
    from scenetune.scheduler import PriorAwareASHA

    request = plan.request
    space = plan.task.space
    trainable = _trainable(plan)
    max_concurrent = request.max_concurrent or _default_concurrency(request)
    if request.space == OPTUNA_SPACE:
        asha = request.early_stopping == "asha"
        priors = [] if request.no_prior else prior_points(space, request.pinned, plan.context)
        # The GP sampler fits its model while the space is defined (~1 s a suggestion); Ray would warn
        # on every trial that the space does "actual computation".
        warnings.filterwarnings(
            "ignore", message="Define-by-run function passed in the `space` argument took"
        )
        searcher = OptunaSearch(
            space=space.define_by_run(request.pinned, plan.constants, plan.context),
            # What the study already knows is tried first, and TPE learns from it.
            points_to_evaluate=priors or None,
            metric=METRIC,
            mode=MODE,
            sampler=make_sampler(
                request.sampler,
                request.seed,
                len(priors),
                stopped_early=asha and plan.epochs > 1,
            ),
        )
        search_alg = ConcurrencyLimiter(_cost_aware(searcher, plan, priors), max_concurrent=max_concurrent)
        scheduler = (
            PriorAwareASHA(
                priors=priors,
                time_attr="epoch",
                metric=METRIC,
                mode=MODE,
                max_t=plan.epochs,
                grace_period=1,
                reduction_factor=3,
                scored_images=_validation_images(plan),
            )
            if asha
            else FIFOScheduler()
        )
        param_space: dict[str, Any] = {}
    else:
        search_alg = BasicVariantGenerator(
            points_to_evaluate=[dict(c) for c in plan.configs],
            max_concurrent=max_concurrent,
            random_state=request.seed,
        )
        scheduler = FIFOScheduler()
        param_space = dict(plan.configs[0])  # every key of the grid; each point overrides it
    progress = ProgressLine(plan.samples, plan.epochs, space.defaults, request.time_budget_s)
    return tune.Tuner(
        trainable,
        param_space=param_space,
        tune_config=tune.TuneConfig(
            search_alg=search_alg,
            scheduler=scheduler,
            num_samples=plan.samples,
            reuse_actors=True,
            trial_dirname_creator=trial_dirname,
            time_budget_s=request.time_budget_s,
        ),
        run_config=run_config(request, plan.name, plan.storage_path, progress),
    )


def _cost_aware(searcher, plan: SweepPlan, priors: list[dict[str, Any]]):
    """With a trial time limit, the searcher of a task that estimates its trials' cost prunes what
    cannot reach a first result within it, and marks the priors to run to that limit."""
    from scenetune.cost import CostAwareSearch

    limit = plan.constants.get("max_trial_seconds")
    if not limit:
        return searcher
    work_of = plan.task.first_result_work(plan.trial_data, plan.inputs, len(plan.trial_data.classes))
    if work_of is None:
        return searcher
    return CostAwareSearch(
        searcher,
        work_of,
        limit_s=float(limit),
        worst_result={METRIC: 0.0, "too_slow": True},  # what a trial stopped at its limit reports
        pruned_log=plan.experiment_dir / PRUNED_FILE if plan.experiment_dir else None,
        priors=priors,
    )


def run_config(request: SweepRequest, name: str, storage_path: str, progress):
    """How every Tuner of a sweep (its search, its refits) stores and reports its trials: result.json
    and progress.csv per trial (the tables read them), the best checkpoint only (without its optimizer
    state once the trial has ended), retries on failure, and a copy of the last whole saved state for
    a resume after a kill."""
    from ray import tune
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

    from scenetune.kept_save import KeepWholeSave
    from scenetune.trial_storage import DropEndedTrainingState

    return tune.RunConfig(
        name=name,
        storage_path=storage_path,
        verbose=2 if request.verbose else 0,
        callbacks=[
            progress,
            JsonLoggerCallback(),
            CSVLoggerCallback(),
            DropEndedTrainingState(),
            KeepWholeSave(),
        ],
        checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
        failure_config=tune.FailureConfig(max_failures=request.max_failures),
    )


def trial_dirname(trial) -> str:
    """Short trial folders in creation order (Ray's default packs every parameter into the name)."""
    return format_trial_dirname(trial.trainable_name, trial.experiment_tag, trial.trial_id)


def _trainable(plan: SweepPlan):
    from ray import tune

    resources = {"cpu": plan.request.cpus_per_trial, "gpu": plan.request.gpus_per_trial}
    return tune.with_resources(tune.with_parameters(plan.task.trainable(), data=plan.inputs), resources)


@dataclass
class SweepOutcome:
    experiment: str
    trials: int
    errors: int
    best_trial: str | None
    best_val_acc: float | None
    best_test_acc: float | None
    best_config: dict[str, Any] | None
    best_checkpoint: str | None
    error_messages: list[str]
    unfinished: int = 0  # trials not run to their end: the sweep was interrupted or ran out of time
    budget_reached: bool = False
    refits: list = field(default_factory=list)  # the refit trials (--refit), TrialRecords
    pruned: list = field(default_factory=list)  # configurations pruned before they started (cost.py)
    val_scores: list[float] = field(default_factory=list)  # each finished trial's best_val_acc
    # how many images the best trial's val_acc was scored on, when not the validation split
    val_images: int | None = None


def run(plan: SweepPlan) -> SweepOutcome:
    """Start (or join) Ray, run the sweep and its refits to their end, and summarise the result grid."""
    # The driver's heartbeat covers all of it, so that a second --resume is refused: a resumed
    # experiment's from Ray's start on, a new one's once its folder and record exist.
    with contextlib.ExitStack() as beating:
        if plan.restoring:
            beating.enter_context(driver_heartbeat(plan.experiment_dir))
        tuner = _start_tuner(plan, beating)
        location = os.path.join(plan.storage_path, plan.name)
        started = time.monotonic()
        with refusing_a_fresh_start(location) if plan.restoring else contextlib.nullcontext():
            results = tuner.fit()
        outcome = summarise(results, location)
        if plan.experiment_dir is not None:
            outcome.unfinished = unfinished_trials(plan.experiment_dir, plan.samples)
            outcome.pruned = pruned_configs(plan.experiment_dir)
        budget = plan.request.time_budget_s
        outcome.budget_reached = budget is not None and time.monotonic() - started >= budget
        searched = not outcome.unfinished or outcome.budget_reached  # ended, not interrupted
        if plan.request.refit and plan.experiment_dir is not None and searched:
            if outcome.best_config is None and outcome.budget_reached:
                raise UserError(
                    f"cannot refit: the time budget of {budget:g} s ended the sweep before any trial "
                    "finished; give it a larger --time-budget"
                )
            from scenetune.refit import run_refit

            outcome.refits = run_refit(plan, _trainable(plan))
        return outcome


def _warn_of_other_arithmetic(experiment_dir: Path) -> None:
    """A resume on other library versions or another instruction set continues correctly, but its new
    trials do not repeat what a run in the recorded environment would have computed: say so."""
    recorded = _recorded(experiment_dir).get("environment", {})
    changes = arithmetic_differences(recorded, current_environment())
    if changes:
        print(
            f"scenetune: resuming in another environment than {experiment_dir.name} started in "
            f"({'; '.join(changes)}): the trials trained from here on will not repeat that "
            "environment's results bit for bit",
            file=sys.stderr,
        )


def _start_tuner(plan: SweepPlan, beating: contextlib.ExitStack):
    """Ray started, the Tuner restored or built; a new experiment's record written and its heartbeat
    entered into `beating`."""
    from ray import tune

    if plan.experiment_dir is not None:  # its record and a resume's check name torch's arithmetic
        start_probing_torch()
    start_ray(plan.request.address, plan.request.verbose)
    _check_resources(plan.request)
    location = os.path.join(plan.storage_path, plan.name)
    if plan.restoring and tune.Tuner.can_restore(location):
        if plan.experiment_dir is not None:  # remote storage is left to Ray
            for line in mend_for_resume(plan.experiment_dir):
                print(f"scenetune: {line}", file=sys.stderr)
            _warn_of_other_arithmetic(plan.experiment_dir)
        return tune.Tuner.restore(
            location, trainable=_trainable(plan), resume_unfinished=True, resume_errored=True
        )
    if not plan.restoring:  # a resumed experiment keeps its folder and record
        _write_record(plan)
        beating.enter_context(driver_heartbeat(plan.experiment_dir))
    return build_tuner(plan)


def summarise(results, location: str) -> SweepOutcome:
    errors = [
        str(r.error).strip().splitlines()[-1] if str(r.error).strip() else type(r.error).__name__
        for r in results
        if r.error
    ]
    finished = [r for r in results if r.metrics and is_accuracy_score(r.metrics.get("best_val_acc"))]
    if not finished:
        return SweepOutcome(location, len(results), len(errors), None, None, None, None, None, errors)
    best = max(finished, key=lambda r: r.metrics["best_val_acc"])
    return SweepOutcome(
        experiment=location,
        trials=len(results),
        errors=len(errors),
        best_trial=best.metrics.get("trial_id"),
        best_val_acc=best.metrics["best_val_acc"],
        best_test_acc=best.metrics.get("test_acc"),
        best_config=best.config,
        best_checkpoint=best.checkpoint.path if best.checkpoint else None,
        error_messages=errors,
        val_scores=[float(r.metrics["best_val_acc"]) for r in finished],
        val_images=best.metrics.get("val_images") or None,
    )

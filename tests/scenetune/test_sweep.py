"""Real sweeps end to end: Ray Tune's Tuner, OptunaSearch, ASHA and PyTorch on a tiny budget."""

from __future__ import annotations

import json
import pickle
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from analysis.results import load_experiment
from analysis.uncertainty import near_best
from scenetune.cli import main
from scenetune.environment import current_environment, torch_cpu_capability
from scenetune.experiment import (
    TRAINING_STATE_FILE,
    is_finite_number,
    load_trials,
    ray_trial_states,
    read_experiment_record,
)
from scenetune.registry import get_task
from tests.processes import kill_and_wait_for_ray
from trainables.checkpoints import WEIGHTS_FILE, load_model

pytestmark = pytest.mark.integration  # real sweeps, servers and browsers

CORE_METRICS = {
    "train_loss",
    "train_acc",
    "val_loss",
    "val_acc",
    "epoch",
    "n_params",
    "trial_seconds",
    "test_acc",
}
TINY = ["--set", "image_size=8", "--set", "width=64"]


def sweep(storage: Path, name: str, *arguments: str) -> int:
    return main(["sweep", "mlp", "--storage", str(storage), "--name", name, *arguments])


@pytest.fixture(scope="module")
def optuna_experiment(tmp_path_factory: pytest.TempPathFactory, ray_session) -> Path:
    storage = tmp_path_factory.mktemp("results")
    # One trial at a time keeps ASHA's decisions independent of timing.
    arguments = ["--samples", "6", "--epochs", "3", "--seed", "7", "--max-concurrent", "1", *TINY]
    assert sweep(storage, "optuna", *arguments) == 0
    return storage / "optuna"


def _first_configs(experiment: Path, count: int) -> list[dict]:
    trials = sorted(load_trials(experiment), key=lambda t: t.directory.name)
    searched = ("lr", "batch_size", "depth", "optimizer", "initializer")
    return [{k: t.config[k] for k in searched} for t in trials[:count]]


def test_optuna_sweep_writes_an_experiment_with_the_core_metrics(optuna_experiment: Path) -> None:
    import ray

    assert ray.is_initialized()  # the command left running the Ray instance it did not start
    record = read_experiment_record(optuna_experiment)
    assert record["task"] == "mlp" and record["space"] == "optuna" and record["seed"] == 7
    assert record["data"]["source"] == "digits" and len(record["data"]["classes"]) == 10
    assert record["environment"] == current_environment()
    trials = load_trials(optuna_experiment)
    assert len(trials) == 6
    assert {r["cpu_capability"] for t in trials for r in t.history} == {torch_cpu_capability()}
    for trial in trials:
        assert trial.history, f"{trial.directory} reported nothing"
        assert CORE_METRICS <= set(trial.last)
        assert [r["epoch"] for r in trial.history] == list(range(1, len(trial.history) + 1))
        assert len(trial.history) <= 3 and trial.config["image_size"] == 8 and trial.config["width"] == 64
        (checkpoint,) = trial.checkpoints()  # only the best epoch's weights are kept
        # ... without the optimizer state once the trial has ended: nothing continues it
        assert (checkpoint / WEIGHTS_FILE).is_file() and not (checkpoint / TRAINING_STATE_FILE).exists()
    # The priors (the first two trials, the defaults and model 1.4) run to the end: ASHA does not judge
    # them. (That ASHA stops weak trials is checked on a cold search in test_analysis.)
    priors = sorted(trials, key=lambda t: t.directory.name)[:2]
    assert [len(t.history) for t in priors] == [3, 3]
    assert max(t.best_score() for t in trials) > 0.5


def test_best_checkpoint_loads_and_reproduces_its_test_accuracy(optuna_experiment: Path) -> None:
    from scenetune.data import load_dataset

    trials = [t for t in load_trials(optuna_experiment) if t.checkpoints()]
    best = max(trials, key=lambda t: t.best_score())
    model, description = load_model(best.checkpoints()[-1])
    test = load_dataset("digits", [8]).test[8]
    predictions = model(__import__("torch").as_tensor(test.x)).argmax(dim=1).numpy()
    assert description["image_size"] == 8 and description["classes"] == [str(d) for d in range(10)]
    assert np.mean(predictions == test.y) == pytest.approx(best.last["test_acc"])


def test_layer_output_command_on_the_experiment(
    optuna_experiment: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from PIL import Image

    images = []
    for index in range(3):
        path = tmp_path / f"digit{index}.png"
        Image.fromarray(np.full((20, 20, 3), 40 * index, dtype=np.uint8)).save(path)
        images.append(str(path))
    out = tmp_path / "second.npy"
    assert (
        main(["layer-output", str(optuna_experiment), *images, "--layer", "second", "--out", str(out)]) == 0
    )
    assert f"layer second: shape (3, 64) -> {out}" in capsys.readouterr().out
    assert np.load(out).shape == (3, 64)
    assert main(["layer-output", str(optuna_experiment), *images, "--layer", "tenth"]) == 2
    assert "valid layers: first, second" in capsys.readouterr().err


def test_the_search_starts_from_the_priors_then_same_seed_same_suggestions(
    optuna_experiment: Path, tmp_path: Path, capsys
) -> None:
    first, second = _first_configs(optuna_experiment, 2)
    assert first == {
        "lr": 1e-3,
        "batch_size": 16,
        "depth": 1,
        "optimizer": "adam",
        "initializer": "glorot_normal",
    }  # the defaults
    assert second["depth"] == 4 and second["lr"] == 1e-3  # the study's model 1.4
    assert sweep(tmp_path, "again", "--samples", "4", "--epochs", "1", "--seed", "7", *TINY) == 0
    assert _first_configs(tmp_path / "again", 4) == _first_configs(optuna_experiment, 4)
    # The sweep says how many trials' validation scores cannot be told from the best's.
    scores = [
        t.last["best_val_acc"]
        for t in load_trials(tmp_path / "again")
        if is_finite_number(t.last.get("best_val_acc"))
    ]
    val_images = read_experiment_record(tmp_path / "again")["data"]["sizes"]["val"]
    near = near_best(scores, val_images).count
    out = capsys.readouterr().out
    assert (f"scenetune: {near} other trial(s) score within one standard error" in out) == (near > 0), out
    assert sweep(tmp_path, "cold", "--samples", "1", "--epochs", "1", "--seed", "7", "--no-prior", *TINY) == 0
    (cold,) = _first_configs(tmp_path / "cold", 1)
    assert cold != first and cold["lr"] != 1e-3  # sampled, not the defaults


def test_the_defaults_as_the_searchs_first_trial_train_exactly_as_in_a_preset(
    optuna_experiment: Path, tmp_path: Path
) -> None:
    # The search's trial also names its derived choice (use_dropout=False); the network, its seed and
    # so its every epoch are the defaults' own, as the initializer preset's first point trains them.
    assert (
        sweep(tmp_path, "initializer", "--space", "initializer", "--seed", "7", "--set", "epochs=3", *TINY)
        == 0
    )
    (preset,) = [
        t for t in load_trials(tmp_path / "initializer") if t.config["initializer"] == "glorot_normal"
    ]
    prior = sorted(load_trials(optuna_experiment), key=lambda t: t.directory.name)[0]
    assert "use_dropout" in prior.config and "use_dropout" not in preset.config
    for key in ("train_loss", "val_acc", "test_acc"):
        assert [r[key] for r in prior.history] == [r[key] for r in preset.history], key


def test_random_search_without_early_stopping_runs_every_trial_to_the_end(
    tmp_path: Path, ray_session
) -> None:
    arguments = [
        "--samples",
        "4",
        "--epochs",
        "3",
        "--sampler",
        "random",
        "--early-stopping",
        "none",
        "--max-concurrent",
        "1",
        *TINY,
    ]
    assert sweep(tmp_path, "random", *arguments) == 0
    experiment = tmp_path / "random"
    trials = load_trials(experiment)
    assert len(trials) == 4 and all([r["epoch"] for r in t.history] == [1, 2, 3] for t in trials)
    searcher = pickle.loads(sorted(experiment.glob("searcher-state-*.pkl"))[-1].read_bytes())
    assert type(searcher["_ot_study"].sampler).__name__ == "RandomSampler"
    recorded = json.loads((experiment / "scenetune.json").read_text())["request"]
    assert (recorded["sampler"], recorded["early_stopping"]) == ("random", "none")


def test_a_configuration_trains_the_same_in_a_worker_that_ran_another_trial_before(
    tmp_path: Path, ray_session
) -> None:
    """The initial weights come from the trial's seed, not from what the reused worker drew before."""
    pinned = {**get_task("mlp").space.defaults, "image_size": 8, "width": 32, "epochs": 2}
    pins = [argument for key, value in pinned.items() for argument in ("--set", f"{key}={value}")]
    arguments = ["--samples", "2", "--sampler", "random", "--early-stopping", "none", "--max-concurrent", "1"]
    assert sweep(tmp_path, "twice", *arguments, *pins) == 0
    first, second = sorted(load_trials(tmp_path / "twice"), key=lambda t: t.directory.name)
    assert first.config == second.config and first.last["pid"] == second.last["pid"]  # one worker, reused
    learnt = ("train_loss", "train_acc", "val_acc", "test_acc")
    assert [[r[k] for k in learnt] for r in first.history] == [[r[k] for k in learnt] for r in second.history]


def test_a_configuration_trains_the_same_whatever_time_limit_the_sweep_gives_it(
    tmp_path: Path, ray_session
) -> None:
    """A run setting is no hyperparameter: the trial's seed, and so its training, does not depend on it."""
    pinned = {**get_task("mlp").space.defaults, "image_size": 8, "width": 32, "epochs": 2}
    pins = [argument for key, value in pinned.items() for argument in ("--set", f"{key}={value}")]
    assert sweep(tmp_path, "unlimited", "--samples", "1", *pins) == 0
    assert sweep(tmp_path, "limited", "--samples", "1", "--max-trial-seconds", "3600", *pins) == 0
    (unlimited,), (limited,) = load_trials(tmp_path / "unlimited"), load_trials(tmp_path / "limited")
    assert limited.config["max_trial_seconds"] == 3600 and "max_trial_seconds" not in unlimited.config
    learnt = ("train_loss", "train_acc", "val_acc", "test_acc")
    assert [[r[k] for k in learnt] for r in unlimited.history] == [
        [r[k] for k in learnt] for r in limited.history
    ]


def test_preset_runs_one_trial_per_grid_value_and_a_diverged_trial_ends_cleanly(
    tmp_path: Path, ray_session, capsys
) -> None:
    assert sweep(tmp_path, "lr", "--space", "lr", "--set", "epochs=1", "--set", "optimizer=sgd", *TINY) == 0
    trials = load_trials(tmp_path / "lr")
    assert sorted(t.config["lr"] for t in trials) == [1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1]
    assert all(t.last["epoch"] == 1 for t in trials)
    capsys.readouterr()  # the next sweep's output alone
    assert (
        sweep(
            tmp_path,
            "diverge",
            "--samples",
            "1",
            "--epochs",
            "3",
            "--set",
            "lr=1e12",
            "--set",
            "optimizer=sgd",
            *TINY,
        )
        == 0
    )
    (trial,) = load_trials(tmp_path / "diverge")
    assert trial.last["diverged"] is True and len(trial.history) == 1
    out = capsys.readouterr().out
    assert "1 diverged" in out and "best val_acc" not in out  # its -1 is not a score
    assert "no trial scored on validation" in out and "best trial" not in out


def test_mit_split_lr_preset(mit_split: Path, tmp_path: Path, ray_session) -> None:
    assert (
        main(
            [
                "sweep",
                "mlp",
                "--data",
                str(mit_split),
                "--space",
                "lr",
                "--set",
                "epochs=1",
                "--set",
                "image_size=16",
                "--set",
                "width=128",
                "--storage",
                str(tmp_path),
                "--name",
                "mit",
            ]
        )
        == 0
    )
    trials = load_trials(tmp_path / "mit")
    assert sorted(t.config["lr"] for t in trials) == [1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1]
    record = read_experiment_record(tmp_path / "mit")
    assert record["data"]["classes"] == sorted(p.name for p in (mit_split / "train").iterdir())
    assert record["data"]["sizes"] == {"train": 1599, "val": 282, "test": 807}


def _scenetune(*arguments: str) -> list[str]:
    return [sys.executable, "-m", "scenetune", *arguments]


# Runs a command as `python -m scenetune` does, then says whether the driver imported torch.
DRIVER_IMPORTS = """
import runpy, sys
sys.argv = ["scenetune", *sys.argv[1:]]
try:
    runpy.run_module("scenetune", run_name="__main__")
finally:
    print("driver imported torch:", "torch" in sys.modules)
"""


def test_a_sweeps_driver_leaves_torch_to_its_trials(tmp_path: Path) -> None:
    """Importing torch costs a driver seconds and memory that only its trials need: the record's
    account of torch's arithmetic comes from a child process."""
    command = ["sweep", "mlp", "--samples", "1", "--epochs", "1", "--refit", "1", *TINY]
    result = subprocess.run(
        [sys.executable, "-c", DRIVER_IMPORTS, *command, "--storage", str(tmp_path), "--name", "lean"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "driver imported torch: False" in result.stdout
    environment = read_experiment_record(tmp_path / "lean")["environment"]
    assert environment["torch_cpu_capability"] == torch_cpu_capability()
    import torch

    assert environment["gpus"] == [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]


def test_a_resume_in_another_environment_says_its_trials_will_not_repeat_bit_for_bit(
    tmp_path: Path, ray_session, capsys: pytest.CaptureFixture
) -> None:
    assert sweep(tmp_path, "moved", "--samples", "1", "--epochs", "1", *TINY) == 0
    resume = ["sweep", "mlp", "--storage", str(tmp_path), "--name", "moved", "--resume"]
    capsys.readouterr()
    assert main(resume) == 0
    assert "another environment" not in capsys.readouterr().err  # the same machine and versions
    record_file = tmp_path / "moved" / "scenetune.json"
    record = json.loads(record_file.read_text())
    record["environment"]["packages"]["torch"] = "2.5.0"
    record["environment"]["torch_cpu_capability"] = "FOREIGN"
    record_file.write_text(json.dumps(record))
    assert main(resume) == 0
    warning = capsys.readouterr().err
    now = current_environment()
    assert f"torch 2.5.0 -> {now['packages']['torch']}" in warning
    assert f"torch's CPU instruction set FOREIGN -> {now['torch_cpu_capability']}" in warning
    assert "will not repeat that environment's results bit for bit" in warning


def test_killed_sweep_resumes_with_all_trials_and_none_run_twice(tmp_path: Path) -> None:
    # Trials of 20 full epochs, so that the kill lands with trials still to run (2 epochs took 50 ms).
    command = [
        "sweep",
        "mlp",
        "--samples",
        "6",
        "--epochs",
        "20",
        "--early-stopping",
        "none",
        "--max-concurrent",
        "1",
        "--seed",
        "3",
        "--storage",
        str(tmp_path),
        "--name",
        "killed",
        *TINY,
    ]
    experiment = tmp_path / "killed"
    process = subprocess.Popen(
        _scenetune(*command), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        while list((seen := ray_trial_states(experiment)).values()).count("TERMINATED") < 2:
            assert process.poll() is None, "the sweep ended before it could be killed"
            time.sleep(0.2)
    finally:
        kill_and_wait_for_ray(process, group=True)
    # What the state said just before the kill: the kill can cut the state file short as Ray copies
    # it (read after the kill, it then holds no trial), which the resume mends from Ray's staging save.
    killed_at = time.time()
    finished_before = {tid for tid, status in seen.items() if status == "TERMINATED"}
    assert len(finished_before) < 6, "the kill came after the last trial: nothing was left to resume"
    resumed = subprocess.run(
        _scenetune("sweep", "mlp", "--storage", str(tmp_path), "--name", "killed", "--resume"),
        capture_output=True,
        text=True,
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "resuming mlp" in resumed.stdout
    trials = load_trials(experiment)
    assert len(trials) == 6
    assert set(ray_trial_states(experiment).values()) == {"TERMINATED"}
    # Every trial ended, those that ended before the kill too: none keeps its optimizer state.
    assert not list(experiment.glob(f"*/checkpoint_*/{TRAINING_STATE_FILE}"))
    # The trials that ended before the kill were not run again, and each has all its epochs: a kill
    # that cut their reports while Ray copied them into the experiment is mended from Ray's staged copy.
    histories_before = {t.trial_id: t.history for t in trials if t.trial_id in finished_before}
    assert len(histories_before) >= 2
    for trial_id, history in histories_before.items():
        assert [row["epoch"] for row in history] == list(range(1, 21)), trial_id
        assert all(row["timestamp"] <= killed_at for row in history), f"{trial_id} ran again"
    # The Optuna study came back with the experiment: it holds every trial, those before the kill too,
    # so the suggestions after the resume were informed by them rather than random again.
    searcher = pickle.loads(sorted(experiment.glob("searcher-state-*.pkl"))[-1].read_bytes())
    told = {round(t.value, 12) for t in searcher["_ot_study"].trials if t.value is not None}
    for trial_id, history in histories_before.items():
        assert round(history[-1]["val_acc"], 12) in told, (
            f"{trial_id} is missing from the resumed Optuna study"
        )
    assert len(searcher["_ot_study"].trials) == 6
    sampler = searcher["_ot_study"].sampler  # the resumed search kept its TPE settings
    assert (
        type(sampler).__name__ == "TPESampler"
        and sampler._multivariate
        and sampler._group
        and sampler._constant_liar
    )


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--data", "/no/such/folder"], "scenetune: error: dataset directory /no/such/folder does not exist"),
        (
            ["--space", "nope"],
            "scenetune: error: unknown space 'nope' for task mlp; choose one of: optuna, lr,",
        ),
        (["--set", "colour=red"], "scenetune: error: --set colour: mlp has no parameter 'colour'"),
        (["--space", "lr", "--set", "lr=0.1"], "scenetune: error: --set lr conflicts with preset 'lr'"),
        (
            ["--set", "initializer=zeros"],
            "scenetune: error: invalid configuration for mlp: initializer must be one of",
        ),
        (["--resume"], "scenetune: error: cannot resume: experiment directory"),
        (
            ["--space", "lr", "--sampler", "random"],
            "scenetune: error: --sampler, --early-stopping and --no-prior apply to the optuna space",
        ),
        (
            ["--early-stopping", "median"],
            "scenetune: error: --early-stopping must be one of asha, none, got 'median'",
        ),
        (
            ["--set", "lr_schedule=step"],
            "scenetune: error: invalid configuration for mlp: lr_schedule must be one of ('constant', 'cosine'), got 'step'",
        ),
    ],
)
def test_bad_input_exits_2_with_one_sentence_before_ray_starts(
    tmp_path: Path, arguments: list[str], message: str
) -> None:
    result = subprocess.run(
        _scenetune("sweep", "mlp", "--storage", str(tmp_path), "--name", "x", *arguments),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert result.stderr.startswith(message) and result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr and not (tmp_path / "x").exists()


def test_an_existing_experiment_is_never_overwritten(tmp_path: Path) -> None:
    existing = tmp_path / "taken"
    existing.mkdir()
    (existing / "keep.txt").write_text("earlier work")
    result = subprocess.run(
        _scenetune("sweep", "mlp", "--storage", str(tmp_path), "--name", "taken"),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and "already exists; pass --resume" in result.stderr
    assert (existing / "keep.txt").read_text() == "earlier work"


def test_a_trial_past_its_time_limit_is_too_slow_not_an_error(tmp_path: Path, ray_session, capsys) -> None:
    # No epoch can end within a millisecond: each trial stops inside its first one.
    assert (
        sweep(tmp_path, "limited", "--samples", "2", "--epochs", "3", "--max-trial-seconds", "0.001", *TINY)
        == 0
    )
    trials = load_experiment(tmp_path / "limited").trials
    assert list(trials["status"]) == ["too_slow", "too_slow"]
    assert trials["val_acc"].isna().all()  # the cut epoch has no score in the tables
    assert main(["table", str(tmp_path / "limited")]) == 0
    assert "too_slow" in capsys.readouterr().out
    assert sweep(tmp_path, "negative", "--max-trial-seconds", "-5") == 2
    assert "--max-trial-seconds must be positive, got -5" in capsys.readouterr().err


def test_a_searched_trial_projected_far_past_its_limit_stops_at_once_and_a_prior_runs_to_it(
    tmp_path: Path, ray_session
) -> None:
    # A hundred thousand epochs project every trial far past an 8 s limit. The two priors (the
    # defaults, model 1.4) run until the limit cuts them; the searched third trial stops after its
    # first epoch instead of holding its slot until then. (At 3 s, on a loaded machine, a prior's
    # start-up and first epoch took more than half the limit, so it too stopped after one epoch.)
    arguments = [
        "--samples",
        "3",
        "--epochs",
        "100000",
        "--max-trial-seconds",
        "8",
        "--early-stopping",
        "none",
    ]
    assert sweep(tmp_path, "projected", *arguments, *TINY) == 0
    trials = load_experiment(tmp_path / "projected").trials.sort_values("order")
    assert list(trials["status"]) == ["too_slow"] * 3
    *priors, searched = trials["epochs_run"]
    assert searched == 1 and min(priors) > 1
    assert trials["val_acc"].notna().all()  # each stopped after a whole, scored epoch


def test_a_trial_the_time_budget_ends_reads_budget_ended_not_stopped_early(
    tmp_path: Path, ray_session, capsys
) -> None:
    # A thousand epochs never fit a 15 s budget; the one trial (the defaults, a prior) is never judged
    # by ASHA, and its own time limit is beyond the budget, so only the budget can end it.
    limits = ["--time-budget", "15", "--max-trial-seconds", "1000"]
    assert sweep(tmp_path, "budget", "--samples", "1", "--epochs", "1000", *limits, *TINY) == 0
    (trial,) = load_experiment(tmp_path / "budget").trials.to_dict("records")
    assert trial["status"] == "budget_ended" and trial["epochs_run"] < 1000
    # The sweep's last lines give the best trial's test accuracy with its interval.
    best = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("best trial "))
    assert re.search(r"test_acc [0-9.]+ \(95% CI [0-9.]+-[0-9.]+ over 450 test images\)", best), best

"""Every registered task passes the same contract checks; the small CNN, added as a plug-in, sweeps,
serves as a feature source and names its layers as the study does."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cloudpickle
import numpy as np
import optuna
import pytest

from scenetune.cli import main
from scenetune.experiment import best_trial, load_trials
from scenetune.registry import TASKS, accepted_source_kinds, task_for_model
from tests.conftest import REPO_ROOT, write_image
from trainables.task import Task

SUGGESTIONS = 60
N_CLASSES = 8


def _context(task: Task) -> dict:
    """What a sweep knows about its --from network; feature tasks are checked as if they had one."""
    if accepted_source_kinds(task):
        return {"has_source": True, "layers": ["second", "third"], "image_size": 32}
    return {"has_source": False}


def _suggestions(task: Task, count: int) -> list[dict]:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    define = task.space.define_by_run({}, {"seed": 0, "epochs": 2}, _context(task))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    configs = []
    for _ in range(count):
        trial = study.ask()
        constants = define(trial)  # suggests first; then the trial's params hold what it suggested
        configs.append({**trial.params, **constants})
        study.tell(trial, 0.0)
    return configs


@pytest.mark.parametrize("name", sorted(TASKS))
def test_every_task_keeps_the_contract(name: str) -> None:
    task = TASKS[name]
    assert isinstance(task, Task) and task.name == name == task.space.task
    context = _context(task)
    task.check_config({**task.space.defaults, "seed": 0}, N_CLASSES, context)  # its defaults are valid
    for preset in task.space.presets:
        configs = task.space.preset_configs(preset, {}, context)
        assert configs, f"{name} preset {preset} has no point"
        for config in configs:
            task.check_config(config, N_CLASSES, context)
    for config in _suggestions(task, SUGGESTIONS):  # whatever the search suggests can be trained
        task.check_config(config, N_CLASSES, context)
    trainable = task.trainable()
    assert trainable.__name__ == f"train_{name}"  # names the trial folders
    assert (
        cloudpickle.loads(cloudpickle.dumps(trainable)).__name__ == trainable.__name__
    )  # Ray ships it to workers
    if task.model_kind is not None:
        assert task_for_model(task.model_kind) is task
    if task.feature_source:
        assert task.model_kind is not None


NETWORK_TASKS = sorted(name for name, task in TASKS.items() if task.model_kind is not None)


@pytest.mark.parametrize("name", NETWORK_TASKS)
def test_a_trials_seed_follows_its_hyperparameters_not_the_searchs_derived_choices(name: str) -> None:
    """A search's derived choices (use_dropout, patches_per_side...) describe no other network: a
    network gets the same seed from a search as from a preset, so a prior reproduces the defaults'
    own result (end to end in test_sweep)."""
    task = TASKS[name]
    with_derived_choices = 0
    for config in _suggestions(task, SUGGESTIONS):
        network = {k: v for k, v in config.items() if k in task.space.defaults or k in ("seed", "epochs")}
        with_derived_choices += len(config) > len(network)
        assert task.trial_seed(config) == task.trial_seed(network)
        assert task.trial_seed({**config, "epochs": 99}) == task.trial_seed(config)  # what a run lets it do
        assert task.trial_seed({**config, "seed": 1}) != task.trial_seed(config)
    assert with_derived_choices == SUGGESTIONS
    defaults = {**task.space.defaults, "seed": 0}
    assert task.trial_seed({**defaults, "lr": defaults["lr"] / 10}) != task.trial_seed(defaults)


def test_a_bad_config_is_refused_by_every_task() -> None:
    for task in TASKS.values():
        with pytest.raises((ValueError, TypeError, KeyError)):
            task.check_config(
                {**task.space.defaults, "batch_size": 0, "C": -1.0, "kernel": "none", "descriptor": "none"},
                N_CLASSES,
                _context(task),
            )


def test_registering_the_tasks_imports_no_torch() -> None:
    probe = "import sys, scenetune.registry; print('torch' in sys.modules, 'ray' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO_ROOT, check=True
    )
    assert result.stdout.split() == ["False", "False"]


def test_cnn_layers_carry_the_studys_names_and_shapes() -> None:
    import torch

    from trainables.cnn import CNNSpec, network_class
    from trainables.models import layer_output

    spec = CNNSpec(input_size=16, n_classes=3, conv_depth=2, conv_width=8, depth=2, width=32)
    model = network_class()(spec)
    assert model.layer_names == ["conv1", "conv2", "first", "second", "third", "output"]
    images = np.random.default_rng(0).integers(0, 255, size=(5, 16, 16, 3), dtype=np.uint8)
    assert tuple(layer_output(model, images, "conv2").shape) == (5, 16, 4, 4)
    assert tuple(layer_output(model, images, "first").shape) == (5, 16 * 4 * 4)
    assert tuple(layer_output(model, images, "third").shape) == (5, 32)
    assert tuple(model(torch.as_tensor(images)).shape) == (5, 3)
    with pytest.raises(ValueError, match="does not fit a 8x8 image"):
        CNNSpec(input_size=8, n_classes=3, conv_depth=4)


def test_cnn_sweeps_and_feeds_feature_svm(tmp_path: Path, ray_session) -> None:
    tiny = ["--set", "image_size=16", "--set", "conv_width=8", "--set", "width=32"]
    assert (
        main(
            [
                "sweep",
                "cnn",
                "--samples",
                "2",
                "--epochs",
                "2",
                *tiny,
                "--storage",
                str(tmp_path),
                "--name",
                "cnn",
            ]
        )
        == 0
    )
    trial = best_trial(tmp_path / "cnn")
    assert trial is not None and trial.best_score() > 0.5 and trial.last["epoch"] == 2
    assert (
        main(
            [
                "sweep",
                "feature_svm",
                "--from",
                str(tmp_path / "cnn"),
                "--space",
                "layer",
                "--storage",
                str(tmp_path),
                "--name",
                "svm",
            ]
        )
        == 0
    )
    svm_trials = {t.config["layer"]: t for t in load_trials(tmp_path / "svm")}
    assert sorted(svm_trials) == sorted(("second", "third", "fourth", "fifth")[: trial.config["depth"]])
    assert all(t.last["val_acc"] > 0.5 for t in svm_trials.values())
    image = write_image(tmp_path / "photo.png", (120, 30, 200), size=40)
    assert (
        main(
            [
                "layer-output",
                str(tmp_path / "cnn"),
                str(image),
                "--layer",
                "second",
                "--out",
                str(tmp_path / "second"),
            ]
        )
        == 0
    )
    assert np.load(tmp_path / "second.npy").shape == (1, 32)


def test_cnn_sweeps_on_mit_split(tmp_path: Path, mit_split: Path, ray_session) -> None:
    arguments = [
        "sweep",
        "cnn",
        "--data",
        str(mit_split),
        "--samples",
        "1",
        "--epochs",
        "1",
        "--set",
        "image_size=16",
        "--set",
        "conv_width=8",
        "--set",
        "width=32",
        "--storage",
        str(tmp_path),
        "--name",
        "mit",
    ]
    assert main(arguments) == 0
    trial = best_trial(tmp_path / "mit")
    assert (
        trial is not None and trial.last["val_acc"] > 1 / 8
    )  # better than chance on 8 scenes after one epoch

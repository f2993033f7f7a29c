from __future__ import annotations

import optuna
import torch

from search_spaces import mlp
from search_spaces.base import OPTUNA_SPACE
from trainables.models import MLP, MLPSpec

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _suggest(count: int, pinned: dict | None = None, seed: int = 0) -> list[dict]:
    define = mlp.SPACE.define_by_run(pinned or {}, {"seed": seed, "epochs": 3})
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=seed), direction="maximize")
    configs = []
    for _ in range(count):
        trial = study.ask()
        constants = define(trial)
        config = {**trial.params, **constants}  # as OptunaSearch merges them
        configs.append(config)
        study.tell(trial, float(config["lr"]))  # any objective: TPE kicks in after its startup trials
    return configs


def test_two_hundred_optuna_suggestions_all_build_a_model() -> None:
    configs = _suggest(200)
    for config in configs:
        with torch.device("meta"):  # builds the real modules without allocating their weights
            model = MLP(MLPSpec.from_config(config, n_classes=10))
        assert model.layer_names[0] == "first" and model.layer_names[-1] == "output"
        assert 1e-5 <= config["lr"] <= 1e-1 and config["image_size"] in mlp.IMAGE_SIZES
        assert config["batch_size"] in mlp.BATCH_SIZES and 1 <= config["depth"] <= 8
        assert (config["dropout"] == 0.0) == (not config["use_dropout"])
        assert config["epochs"] == 3 and config["seed"] == 0
    assert len({c["depth"] for c in configs}) == 8
    assert {c["optimizer"] for c in configs} == {"adam", "adamw", "sgd"}


def test_same_seed_same_suggestions_and_pins_are_respected() -> None:
    assert _suggest(12, seed=5) == _suggest(12, seed=5)
    assert _suggest(3, seed=5) != _suggest(3, seed=6)
    pinned = _suggest(20, {"image_size": 16, "optimizer": "sgd"})
    assert {c["image_size"] for c in pinned} == {16} and {c["optimizer"] for c in pinned} == {"sgd"}


def _grid(preset: str, key: str) -> list:
    return [config[key] for config in mlp.SPACE.preset_configs(preset, {})]


def test_presets_are_the_studys_grids() -> None:
    assert _grid("lr", "lr") == [1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6]
    assert _grid("image_size", "image_size") == [8, 16, 32, 64, 128]
    assert _grid("batch_size", "batch_size") == [1, 8, 16, 32, 64, 128, 256, 512]
    assert _grid("depth", "depth") == list(range(1, 9))
    regularization = mlp.SPACE.preset_configs("regularization", {})
    assert [(c["batch_norm"], c["dropout"] > 0) for c in regularization] == [
        (False, False),
        (True, False),
        (False, True),
        (True, True),
    ]
    assert {c["depth"] for c in regularization} == {4}
    assert [(c["width"], c["width_schedule"]) for c in mlp.SPACE.preset_configs("width", {})] == [
        (2048, "halve"),
        (4096, "halve"),
        (4096, "constant"),
    ]
    assert _grid("initializer", "initializer") == [
        "glorot_normal",
        "truncated_normal",
        "random_normal",
        "random_uniform",
    ]
    for config in mlp.SPACE.preset_configs("lr", {}):  # the study's fixed defaults around the swept factor
        assert (
            config["image_size"],
            config["optimizer"],
            config["batch_size"],
            config["depth"],
            config["width"],
        ) == (32, "adam", 16, 1, 2048)


def test_presets_list_their_factors_and_the_data_they_need() -> None:
    assert mlp.PRESETS["regularization"].factors == ["batch_norm", "dropout"]
    assert mlp.SPACE.possible_values("image_size", "image_size", {}) == [8, 16, 32, 64, 128]
    assert mlp.SPACE.possible_values("image_size", OPTUNA_SPACE, {}) == mlp.IMAGE_SIZES
    assert mlp.SPACE.possible_values("image_size", "lr", {"image_size": 16}) == [16]


def test_presets_command_lists_every_task(capsys) -> None:
    from scenetune.cli import main
    from scenetune.registry import TASKS

    assert main(["presets"]) == 0
    listing = capsys.readouterr().out
    for task in TASKS.values():
        assert sum(line.startswith(f"{task.name}: ") for line in listing.splitlines()) == 1
        for preset in task.space.presets:
            assert f"  {preset} " in listing


# For each task, the parameters that only some branches of its space suggest, and on which branch;
# every other searched parameter must be suggested on every branch.
BRANCHES = {
    "mlp": {"dropout": lambda c: c["use_dropout"]},
    "cnn": {"dropout": lambda c: c["use_dropout"]},
    "patch_mlp": {
        "aggregation_image": lambda c: c["train_on"] == "image",
        "aggregation_patch": lambda c: c["train_on"] == "patch",
    },
    "feature_svm": {
        "gamma_scale": lambda c: c["kernel"] == "rbf",
        "gamma_factor": lambda c: c["kernel"] == "rbf" and not c["gamma_scale"],
        "degree": lambda c: c["kernel"] == "poly",
    },
    "bovw": {
        "sift_step": lambda c: c["descriptor"] == "sift",
        "sift_size": lambda c: c["descriptor"] == "sift",
        "layer": lambda c: c["descriptor"] == "learnt",
        "gamma_scale": lambda c: c["kernel"] == "rbf",
        "gamma_factor": lambda c: c["kernel"] == "rbf" and not c["gamma_scale"],
    },
}


def test_every_space_suggests_each_parameter_on_every_branch_it_applies_to() -> None:
    from scenetune.registry import TASKS

    for name, task in TASKS.items():
        context = {"has_source": True, "layers": ["second", "third"], "image_size": 32}
        define = task.space.define_by_run({}, {"seed": 0, "epochs": 2}, context)
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
        suggested = []
        for _ in range(200):
            trial = study.ask()
            define(trial)
            suggested.append(dict(trial.params))
            study.tell(trial, 0.0)
        everywhere = set().union(*suggested) - set(BRANCHES[name])
        for params in suggested:
            assert everywhere <= set(params), (
                f"{name}: {sorted(everywhere - set(params))} not suggested on {params}"
            )
            for param, applies in BRANCHES[name].items():
                assert (param in params) == applies(params), f"{name}: {param} on {params}"
        for param, applies in BRANCHES[name].items():  # each branch was taken both ways in 200 suggestions
            assert {applies(params) for params in suggested} == {True, False}, f"{name}: {param}"


def test_priors_replay_to_exactly_their_configurations() -> None:
    from scenetune.registry import TASKS
    from search_spaces.base import prior_points

    context = {"has_source": True, "layers": ["second", "third"], "image_size": 32}
    for name, task in TASKS.items():
        points = prior_points(task.space, {}, context)
        assert len(points) == len(task.space.priors), name  # every prior can be produced by its space
        define = task.space.define_by_run({}, {}, context)
        for prior, point in zip(task.space.priors, points):
            trial = optuna.trial.FixedTrial(point)  # what OptunaSearch's enqueued trial answers
            config = {**define(trial), **trial.params}
            expected = {**task.space.defaults, **prior}
            assert {key: config[key] for key in expected} == expected, (
                name
            )  # plus derived choices (use_dropout...)
    pinned = prior_points(TASKS["mlp"].space, {"image_size": 16}, {})
    assert [p.get("image_size") for p in pinned] == [None, None] and [p["depth"] for p in pinned] == [1, 4]
    # A learnt-descriptor BoVW sweep drops the dense-SIFT prior whose patch size its branch has no
    # place for (the defaults become the learnt prior); a dense-SIFT sweep keeps both SIFT priors.
    learnt = prior_points(TASKS["bovw"].space, {"descriptor": "learnt"}, context)
    assert [(p["layer"], p["codebook_size"], p["kernel"]) for p in learnt] == [("last", 256, "rbf")]
    sift = prior_points(TASKS["bovw"].space, {"descriptor": "sift"}, context)
    assert [(p.get("sift_size"), p.get("codebook_size"), p.get("kernel")) for p in sift] == [
        (16, 256, "rbf"),
        (8, 512, "intersection"),
    ]


def test_pins_override_a_presets_base_model_but_not_its_points():
    # A chain of sweeps runs the regularisation table on the depth an earlier step chose.
    on_depth_2 = mlp.SPACE.preset_configs("regularization", {"depth": 2, "batch_norm": True})
    assert {c["depth"] for c in on_depth_2} == {2}
    assert [c["batch_norm"] for c in on_depth_2] == [False, True, False, True]  # the points still vary it

"""Cost-aware trials: the work estimate of each network task, and pruning through a real OptunaSearch."""

from __future__ import annotations

import functools
import json

import optuna
import pytest
from ray.tune.search import ConcurrencyLimiter
from ray.tune.search.optuna import OptunaSearch
from ray.tune.search.search_generator import SearchGenerator

from scenetune.cost import CostAwareSearch, EpochCost, MeasuredRate, NetworkEpochWork, WorkEstimate
from scenetune.experiment import PRUNED_FILE, RUN_TO_LIMIT, pruned_configs
from scenetune.registry import get_task
from search_spaces import cnn, mlp, patch_mlp
from trainables.models import MLP, count_parameters
from trainables.specs import MLPSpec


def test_mlp_work_is_twice_its_weights_per_sample():
    config = {**mlp.SPACE.defaults, "image_size": 32, "depth": 2, "width": 512}
    weights = count_parameters(MLP(MLPSpec.from_config(config, n_classes=8)))
    work = WorkEstimate("mlp", 8)(config)
    # one multiply-add per weight; the biases and the input scaling are not counted
    assert 2 * (weights - 2 * 512) * 0.99 <= work <= 2 * weights


def test_patch_mlp_work_grows_with_the_patches_per_image():
    config = {**patch_mlp.SPACE.defaults, "image_size": 64, "patch_size": 16}
    sixteen_patches = WorkEstimate("patch_mlp", 8)(config)
    four_patches = WorkEstimate("patch_mlp", 8)({**config, "patch_size": 32})
    for patches, side, work in ((16, 16, sixteen_patches), (4, 32, four_patches)):
        per_patch = 2 * count_parameters(MLP(MLPSpec.from_config(config, 8, input_size=side)))
        assert work == pytest.approx(patches * per_patch, rel=0.05)


def test_cnn_work_counts_the_convolutions_at_every_position():
    config = {**cnn.SPACE.defaults, "image_size": 32}
    small, large = WorkEstimate("cnn", 8)(config), WorkEstimate("cnn", 8)({**config, "image_size": 64})
    weights = count_parameters(get_task("cnn").network_for(config, 8))
    assert small > 2 * weights  # a convolution's weights are used at every position of the image
    assert large > 3 * small


def test_tasks_without_a_network_have_no_estimate():
    assert get_task("bovw").network_for({}, 8) is None


def test_the_estimate_uses_the_fastest_rate_measured():
    rate = MeasuredRate()
    assert rate.estimate(1e6) is None  # nothing measured yet: nothing is pruned
    rate.measured(work=1e9, seconds=2.0)  # 2e-9 s per unit
    rate.measured(work=1e10, seconds=10.0)  # 1e-9 s per unit: the faster rate wins
    assert rate.estimate(1e11) == pytest.approx(1e11 * 1e-9)


def test_a_network_epoch_is_its_work_per_sample_times_the_samples_at_the_measured_speed():
    epoch = NetworkEpochWork(WorkEstimate("mlp", 8), train_samples=2000)
    config = {**mlp.SPACE.defaults, "image_size": 32}
    assert epoch.work(config) == 2000 * WorkEstimate("mlp", 8)(config)
    assert epoch.seconds({"train_samples_per_s": 500.0}) == 4.0
    assert epoch.seconds({"val_acc": 0.5}) is None


def _width_space(widths: list[int], trial: optuna.Trial) -> dict:
    trial.suggest_categorical("width", widths)
    return {"image_size": 32, "depth": 4, "width_schedule": "constant"}


def _searcher(tmp_path, widths, limit_s, priors=()):
    optuna_search = OptunaSearch(
        space=functools.partial(_width_space, widths),
        points_to_evaluate=list(priors) or None,
        metric="val_acc",
        mode="max",
        sampler=optuna.samplers.RandomSampler(seed=0),
    )
    return optuna_search, CostAwareSearch(
        optuna_search,
        NetworkEpochWork(WorkEstimate("mlp", 8), train_samples=2000),
        limit_s=limit_s,
        worst_result={"val_acc": 0.0, "too_slow": True},
        pruned_log=tmp_path / PRUNED_FILE,
        priors=priors,
    )


def test_configurations_past_the_limit_are_pruned_and_optuna_is_told(tmp_path):
    optuna_search, search = _searcher(tmp_path, [64, 4096], limit_s=5.0)
    first = search.suggest("t0")
    assert first["width"] in (64, 4096)  # nothing measured yet: the first suggestion runs
    work = WorkEstimate("mlp", 8)({**first, "width": 64})
    # As measured: a width-64 network trains 2000 samples in 1 s; width 4096 has ~400x its work.
    rate = 2000.0 * work / WorkEstimate("mlp", 8)(first)
    search.on_trial_result("t0", {"val_acc": 0.5, "training_iteration": 1, "train_samples_per_s": rate})
    search.on_trial_complete("t0", {"val_acc": 0.5})
    accepted = [search.suggest(f"t{i}") for i in range(1, 9)]
    assert {config["width"] for config in accepted} == {64}
    pruned = pruned_configs(tmp_path)
    assert pruned and all(entry["config"]["width"] == 4096 for entry in pruned)
    assert all(entry["estimated_epoch_seconds"] > 5.0 for entry in pruned)
    later = optuna_search._ot_study.trials[1:]  # the first, measured trial is t0
    told = [t for t in later if t.params.get("width") == 4096]
    assert len(told) == len(pruned) and all(t.value == 0.0 for t in told)
    # results of an accepted suggestion reach optuna under the id that asked for it
    search.on_trial_complete("t8", {"val_acc": 0.7})
    assert 0.7 in [t.value for t in optuna_search._ot_study.trials]


def test_only_a_priors_configuration_is_marked_to_run_to_its_limit(tmp_path):
    _, search = _searcher(tmp_path, [64, 128, 256, 512], limit_s=1e9, priors=[{"width": 512}])
    prior, *searched = [search.suggest(f"t{i}") for i in range(12)]
    assert prior == {
        "width": 512,
        "image_size": 32,
        "depth": 4,
        "width_schedule": "constant",
        RUN_TO_LIMIT: True,
    }
    # A searched configuration equal to the prior is that configuration: it is marked as well.
    assert {config.get(RUN_TO_LIMIT, False) for config in searched if config["width"] == 512} <= {True}
    unmarked = [config for config in searched if RUN_TO_LIMIT not in config]
    assert unmarked and all(config["width"] != 512 for config in unmarked)


def test_a_generous_limit_prunes_nothing(tmp_path):
    _, search = _searcher(tmp_path, [64, 4096], limit_s=1e9)
    search.suggest("t0")
    search.on_trial_result("t0", {"val_acc": 0.5, "training_iteration": 1, "train_samples_per_s": 1000.0})
    for i in range(1, 6):
        assert search.suggest(f"t{i}") is not None
    assert not (tmp_path / PRUNED_FILE).exists()


def test_a_line_cut_short_by_a_kill_is_skipped(tmp_path):
    entry = {"config": {"width": 8}, "estimated_epoch_seconds": 9.0, "max_trial_seconds": 1.0}
    (tmp_path / PRUNED_FILE).write_text(json.dumps(entry) + "\n" + '{"config": {"wid')
    assert pruned_configs(tmp_path) == [entry]


def test_the_calibration_is_saved_with_the_experiment_and_restored(tmp_path):
    _, search = _searcher(tmp_path, [64, 4096], limit_s=5.0)
    search.suggest("t0")
    search.on_trial_result("t0", {"val_acc": 0.5, "training_iteration": 1, "train_samples_per_s": 1000.0})
    SearchGenerator(ConcurrencyLimiter(search, max_concurrent=2)).save_to_dir(str(tmp_path), "s")
    _, fresh = _searcher(tmp_path, [64, 4096], limit_s=5.0)
    SearchGenerator(ConcurrencyLimiter(fresh, max_concurrent=2)).restore_from_dir(str(tmp_path))
    assert fresh.rate.seconds_per_work == search.rate.seconds_per_work is not None


def test_a_calibration_saved_per_sample_by_an_earlier_version_resumes_at_the_same_rate(tmp_path):
    _, search = _searcher(tmp_path, [64, 4096], limit_s=5.0)
    work_per_sample = WorkEstimate("mlp", 8)
    saved = {
        **search.get_state(),
        "cost": EpochCost(2000, 3e-9),
        "work_of": work_per_sample,
        "work": {"t0": 1.0},
    }
    del saved["rate"]
    search.set_state(saved)
    assert search.rate.seconds_per_work == 3e-9 and search.work == {}
    assert search.work_of == NetworkEpochWork(work_per_sample, 2000)

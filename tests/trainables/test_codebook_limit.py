"""A BoVW trial's codebook fit under its time limit: estimated before the trial starts (pruned when
even the fastest rate measured puts it past the limit), and cut by the deadline when it runs."""

from __future__ import annotations

import dataclasses
import fcntl
import functools
import math
import threading
import time
from pathlib import Path

import numpy as np
import optuna
import pytest
from ray.tune.search.optuna import OptunaSearch

from scenetune.cli import main
from scenetune.cost import CostAwareSearch
from scenetune.data import load_dataset, make_trial_data
from scenetune.experiment import PRUNED_FILE, load_trials, pruned_configs
from search_spaces import bovw
from trainables import descriptors
from trainables.array_cache import WaitPastDeadline, cache_file, cached_arrays
from trainables.bovw import (
    MAX_KMEANS_SAMPLES,
    BovwInputs,
    Codebook,
    CodebookFitWork,
    DescriptorSetting,
    DescriptorSources,
    _visual_words,
    codebook_fit_work,
    descriptor_setting,
    kmeans_batch_size,
)
from trainables.descriptors import Descriptors, FitPastDeadline, fit_codebook, fit_codebook_by

SIFT_64 = {**bovw.DEFAULTS, "image_size": 64, "sift_step": 8, "sift_size": 16}  # a 7 x 7 grid


def _sources(tmp_path: Path, layers=(), widths=(), patches=0) -> DescriptorSources:
    checkpoint = tmp_path / "checkpoint"
    checkpoint.mkdir(exist_ok=True)
    (checkpoint / "model.pt").touch()  # the learnt descriptors' key names its file's time
    return DescriptorSources(
        source_checkpoint=str(checkpoint),
        source_layers=tuple(layers),
        source_widths=tuple(widths),
        source_image_size=32,
        source_patches=patches,
        data_key="data",
        cache_dir=str(tmp_path / "bovw"),
    )


def test_a_fit_grows_as_k_squared_until_its_initialisation_sample_holds_every_descriptor():
    many, few = 25_000, 4_000
    assert 3 * kmeans_batch_size(1024) < many  # 12 k samples per initialisation
    assert codebook_fit_work(many, 128, 1024) / codebook_fit_work(many, 128, 512) == pytest.approx(
        4 * (2 + math.log(1024)) / (2 + math.log(512))
    )
    # Past that, every descriptor is in the sample: the work grows as k (times ln k) only.
    assert codebook_fit_work(few, 128, 2048) / codebook_fit_work(few, 128, 1024) == pytest.approx(
        2 * (2 + math.log(2048)) / (2 + math.log(1024))
    )
    assert codebook_fit_work(10 * MAX_KMEANS_SAMPLES, 128, 2**15) == codebook_fit_work(
        MAX_KMEANS_SAMPLES, 128, 2**15
    )


def test_the_work_counts_each_settings_descriptors_and_their_dimensions(tmp_path: Path):
    learnt = _sources(tmp_path, layers=("hidden_0", "hidden_1"), widths=(2048, 1024), patches=16)
    work = CodebookFitWork(learnt, train_images=1000)
    sift = work.work({**SIFT_64, "codebook_size": 256})
    assert sift == codebook_fit_work(49 * 1000, 128, 256)
    last = work.work({**SIFT_64, "descriptor": "learnt", "layer": "last", "codebook_size": 256})
    first = work.work({**SIFT_64, "descriptor": "learnt", "layer": "hidden_0", "codebook_size": 256})
    assert last == codebook_fit_work(16 * 1000, 1024, 256) and first == 2 * last


def test_a_cached_codebook_costs_nothing(tmp_path: Path):
    work = CodebookFitWork(_sources(tmp_path), train_images=1000)
    config = {**SIFT_64, "codebook_size": 2048}
    assert work.work(config) > 0
    key = "data|sift|step=8|size=16|64px|k=2048|seed=0|fit=train"  # trainables.bovw._counts_key
    codebooks = Path(work.sources.cache_dir) / "codebooks"
    codebooks.mkdir(parents=True)
    cache_file(codebooks, key).touch()
    assert work.work(config) == 0.0
    assert work.seconds({"codebook_fit_seconds": 3.0}) == 3.0 and work.seconds({"val_acc": 0.5}) is None


def _codebook_space(sizes: list[int], trial: optuna.Trial) -> dict:
    trial.suggest_categorical("codebook_size", sizes)
    return {key: value for key, value in SIFT_64.items() if key != "codebook_size"}


def test_codebooks_whose_fit_is_estimated_past_the_limit_are_pruned(tmp_path: Path):
    optuna_search = OptunaSearch(
        space=functools.partial(_codebook_space, [64, 2048]),
        points_to_evaluate=[{"codebook_size": 64}],
        metric="val_acc",
        mode="max",
        sampler=optuna.samplers.RandomSampler(seed=0),
    )
    work = CodebookFitWork(_sources(tmp_path), train_images=1000)
    search = CostAwareSearch(
        optuna_search, work, 30.0, {"val_acc": 0.0, "too_slow": True}, tmp_path / PRUNED_FILE
    )
    assert search.suggest("t0")["codebook_size"] == 64
    # Measured: the 64-word fit took 1 s. A 2048-word one is ~1000 times the work. A one-step trial's
    # only result reaches the searcher with its completion (ASHA stops it at its last step).
    search.on_trial_complete("t0", {"val_acc": 0.5, "training_iteration": 1, "codebook_fit_seconds": 1.0})
    assert {search.suggest(f"t{i}")["codebook_size"] for i in range(1, 7)} == {64}
    pruned = pruned_configs(tmp_path)
    assert pruned and all(entry["config"]["codebook_size"] == 2048 for entry in pruned)
    assert all(entry["estimated_part"] == "codebook fit" for entry in pruned)
    assert all(entry["estimated_epoch_seconds"] > 30.0 for entry in pruned)


def _descriptors(samples: int, dimensions: int) -> Descriptors:
    values = np.random.default_rng(0).normal(size=(samples, dimensions)).astype(np.float32)
    return Descriptors(values, np.arange(samples) // 10, samples // 10)


def test_a_fit_that_ends_by_its_deadline_gives_the_same_codebook(ray_session):
    train = _descriptors(3000, 16)
    far = fit_codebook_by(train, 32, seed=1, deadline=time.perf_counter() + 3600)
    assert np.array_equal(far, fit_codebook(train, 32, seed=1))
    assert np.array_equal(fit_codebook_by(train, 32, seed=1, deadline=None), far)


def test_a_fit_past_its_deadline_is_given_up(ray_session):
    with pytest.raises(FitPastDeadline):
        fit_codebook_by(_descriptors(3000, 16), 32, seed=1, deadline=time.perf_counter() - 1)
    # Fifteen hundred centres among 18,000 samples: tens of seconds of k-means++, cut after one.
    with pytest.raises(FitPastDeadline):
        fit_codebook_by(_descriptors(30_000, 256), 1500, seed=1, deadline=time.perf_counter() + 1)


def test_a_bovw_trial_whose_codebook_fit_passes_its_limit_is_too_slow(tmp_path: Path, ray_session):
    # 4,580 SIFT descriptors on 16-pixel digits: 4,000 words take seconds of k-means++, the limit one.
    sift = ["--set", "image_size=16", "--set", "sift_step=8", "--set", "sift_size=8"]
    big = ["--set", "codebook_size=4000", "--max-trial-seconds", "1"]
    arguments = ["sweep", "bovw", "--samples", "1", *sift, *big, "--storage", str(tmp_path), "--name", "cut"]
    assert main(arguments) == 0
    (trial,) = load_trials(tmp_path / "cut")
    assert trial.last["too_slow"] is True and math.isnan(trial.last["test_acc"])
    assert (
        "the fit of its codebook could not finish within --max-trial-seconds 1 (4000-word codebook)"
        in trial.last["error_message"]
    )
    assert "codebook_fit_seconds" not in trial.last


def test_a_wait_for_another_trials_codebook_gives_up_at_the_deadline(tmp_path: Path):
    computed: list[str] = []

    def compute() -> dict[str, np.ndarray]:
        computed.append("centres")
        return {"centres": np.ones(3)}

    lock_path = cache_file(tmp_path, "codebook").with_suffix(".lock")
    with open(lock_path, "w") as other_trial:  # another trial holds the key's lock while it fits
        fcntl.flock(other_trial, fcntl.LOCK_EX)
        with pytest.raises(WaitPastDeadline):
            cached_arrays(tmp_path, "codebook", compute, deadline=time.perf_counter() + 0.5)
        assert not computed and not cache_file(tmp_path, "codebook").is_file()
    arrays, cached = cached_arrays(tmp_path, "codebook", compute, deadline=time.perf_counter() + 5)
    assert not cached and computed == ["centres"] and list(arrays["centres"]) == [1.0, 1.0, 1.0]
    assert cached_arrays(tmp_path, "codebook", compute)[1] and computed == [
        "centres"
    ]  # no deadline: as before


@dataclasses.dataclass(frozen=True)
class _SlowToDescribe(DescriptorSetting):
    """Dense SIFT that takes DESCRIBE_S longer, as a fine grid on large images does the first time."""

    def compute(self, images: np.ndarray) -> Descriptors:
        time.sleep(DESCRIBE_S)
        return super().compute(images)


DESCRIBE_S = 2.0


def _spy_on_fit_deadlines(monkeypatch: pytest.MonkeyPatch) -> list[float | None]:
    """The deadline each codebook fit is given, in order; the real fit then runs under it."""
    deadlines: list[float | None] = []
    real_fit = descriptors.fit_codebook_by
    monkeypatch.setattr(
        descriptors,
        "fit_codebook_by",
        lambda train, k, seed, deadline: deadlines.append(deadline) or real_fit(train, k, seed, deadline),
    )
    return deadlines


def _slow_sift_on_digits(
    setting_class: type[DescriptorSetting], tmp_path: Path
) -> tuple[DescriptorSetting, BovwInputs]:
    """A 16-pixel dense-SIFT setting of `setting_class` (slow to describe) on digits."""
    inputs = BovwInputs(
        make_trial_data(load_dataset("digits", [16]), 0.15, False, seed=0), _sources(tmp_path)
    )
    config = {**bovw.DEFAULTS, "image_size": 16, "sift_step": 8, "sift_size": 8, "codebook_size": 8}
    return setting_class(**dataclasses.asdict(descriptor_setting(config, inputs.sources))), inputs


def test_the_first_computation_of_a_settings_descriptors_does_not_count_against_the_limit(
    tmp_path: Path, ray_session, monkeypatch: pytest.MonkeyPatch
):
    deadlines = _spy_on_fit_deadlines(monkeypatch)
    setting, inputs = _slow_sift_on_digits(_SlowToDescribe, tmp_path)
    digits = inputs.data
    limit_ends = time.perf_counter() + 600
    words = _visual_words(setting, inputs, Codebook("digits|k=8", 8, 0, "train", limit_ends))
    assert not words["descriptors_cached"] and not words["codebook_cached"]
    assert words["train"].shape == (len(digits.at_size(16)["train"]), 8)
    assert deadlines[0] >= limit_ends + DESCRIBE_S  # moved by the time the descriptors took
    # Once the descriptors are cached, the fit has about the trial's own deadline (moved by their
    # load), and a passed one cuts it.
    _visual_words(setting, inputs, Codebook("digits|k=9", 9, 0, "train", limit_ends))
    assert limit_ends <= deadlines[1] < limit_ends + DESCRIBE_S
    with pytest.raises(FitPastDeadline):
        _visual_words(setting, inputs, Codebook("digits|k=10", 10, 0, "train", time.perf_counter() - 1))


DESCRIBING = threading.Event()


@dataclasses.dataclass(frozen=True)
class _SignalsItsComputation(_SlowToDescribe):
    def compute(self, images: np.ndarray) -> Descriptors:
        DESCRIBING.set()
        return super().compute(images)


def test_a_wait_for_another_trial_computing_the_descriptors_does_not_count_against_the_limit(
    tmp_path: Path, ray_session, monkeypatch: pytest.MonkeyPatch
):
    deadlines = _spy_on_fit_deadlines(monkeypatch)
    setting, inputs = _slow_sift_on_digits(_SignalsItsComputation, tmp_path)
    DESCRIBING.clear()
    computing = threading.Thread(
        target=_visual_words, args=(setting, inputs, Codebook("digits|k=8", 8, 0, "train", None))
    )
    computing.start()  # another trial computes the setting's descriptors: DESCRIBE_S for each split
    DESCRIBING.wait()
    limit_ends = time.perf_counter() + 600
    words = _visual_words(setting, inputs, Codebook("digits|k=9", 9, 0, "train", limit_ends))
    computing.join()
    assert words["descriptors_cached"]  # it waited for them, then loaded them
    (waited,) = [deadline for deadline in deadlines if deadline is not None]
    assert waited >= limit_ends + DESCRIBE_S  # moved by the wait: the other trial had two splits left

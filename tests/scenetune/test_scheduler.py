"""ASHA's decisions for a short search that starts from priors, on Ray Tune's own Trial records."""

from __future__ import annotations

from ray.tune.experiment import Trial
from ray.tune.schedulers import TrialScheduler

from scenetune.scheduler import PriorAwareASHA, is_prior

DEFAULTS = {"lr": 1e-3, "depth": 1}
MODEL_1_4 = {"lr": 1e-3, "depth": 4}


def scheduler(
    priors: list[dict] | None = None, bootstrap: int | None = None, scored_images: int | None = None
) -> PriorAwareASHA:
    return PriorAwareASHA(
        priors=priors or [],
        bootstrap=bootstrap,
        scored_images=scored_images,
        time_attr="epoch",
        metric="val_acc",
        mode="max",
        max_t=9,
        grace_period=1,
        reduction_factor=3,
    )


def added(asha: PriorAwareASHA, config: dict) -> Trial:
    trial = Trial("__fake", config=config, stub=True)
    asha.on_trial_add(None, trial)
    return trial


def report(asha: PriorAwareASHA, trial: Trial, epoch: int, val_acc: float) -> str:
    return asha.on_trial_result(None, trial, {"epoch": epoch, "val_acc": val_acc})


def test_a_rung_stops_nothing_until_it_holds_three_results_then_keeps_the_top_third() -> None:
    asha = scheduler()
    first, second, third, fourth, fifth = (added(asha, {"lr": 10.0**-k, "depth": 2}) for k in range(5))
    # Ray's ASHA alone would stop the second and third: one result is its own 67th percentile.
    assert report(asha, first, 1, 0.60) == TrialScheduler.CONTINUE
    assert report(asha, second, 1, 0.40) == TrialScheduler.CONTINUE
    assert report(asha, third, 1, 0.50) == TrialScheduler.CONTINUE
    assert report(asha, fourth, 1, 0.45) == TrialScheduler.STOP  # below the top third of 0.4/0.5/0.6
    assert report(asha, fifth, 1, 0.70) == TrialScheduler.CONTINUE


def test_priors_run_to_the_end_and_do_not_set_the_cut_offs() -> None:
    asha = scheduler(priors=[DEFAULTS, MODEL_1_4])
    defaults = added(asha, {**DEFAULTS, "image_size": 32})
    model_1_4 = added(asha, {**MODEL_1_4, "image_size": 32})
    slow = [added(asha, {"lr": 10.0**-k, "depth": 3}) for k in (4, 5, 6)]
    assert report(asha, defaults, 1, 0.10) == TrialScheduler.CONTINUE  # a weak prior is not stopped
    assert report(asha, model_1_4, 1, 0.90) == TrialScheduler.CONTINUE
    # Three slow starters far below model 1.4 at epoch 1 all go on: only they fill the rung.
    assert [report(asha, trial, 1, acc) for trial, acc in zip(slow, (0.20, 0.30, 0.25))] == [
        TrialScheduler.CONTINUE
    ] * 3
    assert report(asha, defaults, 3, 0.10) == TrialScheduler.CONTINUE
    assert report(asha, defaults, 9, 0.10) == TrialScheduler.STOP  # its last epoch ends it, as any trial
    weak = added(asha, {"lr": 0.5, "depth": 2})
    assert report(asha, weak, 1, 0.21) == TrialScheduler.STOP  # judged against the slow starters only


def test_before_a_rung_can_judge_it_stops_only_trials_clearly_below_every_prior() -> None:
    asha = scheduler(priors=[DEFAULTS, MODEL_1_4], scored_images=282)
    defaults, model_1_4 = added(asha, DEFAULTS), added(asha, MODEL_1_4)
    early = added(asha, {"lr": 0.3, "depth": 8})
    assert report(asha, early, 1, 0.05) == TrialScheduler.CONTINUE  # no prior has reached epoch 1 yet
    assert report(asha, defaults, 1, 0.48) == TrialScheduler.CONTINUE
    assert report(asha, model_1_4, 1, 0.46) == TrialScheduler.CONTINUE
    # The floor at epoch 1: the worse prior less one standard error on 282 images, 0.46 - 0.030.
    broken, just_under, slow = (added(asha, {"lr": 10.0**-k, "depth": 3}) for k in (1, 5, 6))
    assert report(asha, broken, 1, 0.20) == TrialScheduler.STOP
    assert report(asha, just_under, 1, 0.42) == TrialScheduler.STOP
    # Epoch 3's rung holds no prior result yet: the priors' epoch-1 results do not judge there.
    assert report(asha, early, 3, 0.06) == TrialScheduler.CONTINUE
    # The rung at epoch 1 holds three results now (0.05, 0.20, 0.42; stopped trials count, as in Ray's
    # ASHA), so from here its top third judges, as in the first test: 0.44 clears the 67th percentile.
    assert report(asha, slow, 1, 0.44) == TrialScheduler.CONTINUE
    late = added(asha, {"lr": 1e-2, "depth": 2})
    assert report(asha, late, 1, 0.41) == TrialScheduler.STOP  # above the floor, below the top third
    without_floor = scheduler(priors=[DEFAULTS])
    prior, other = added(without_floor, DEFAULTS), added(without_floor, {"lr": 0.3, "depth": 8})
    report(without_floor, prior, 1, 0.48)
    assert report(without_floor, other, 1, 0.05) == TrialScheduler.CONTINUE  # no image count, no floor


def test_a_rung_full_of_broken_trials_does_not_lower_the_floor() -> None:
    asha = scheduler(priors=[DEFAULTS, MODEL_1_4], scored_images=282)
    report(asha, added(asha, DEFAULTS), 1, 0.48)
    report(asha, added(asha, MODEL_1_4), 1, 0.46)
    broken = [added(asha, {"lr": 10.0**-k, "depth": 8}) for k in (1, 2, 3)]
    assert [report(asha, trial, 1, acc) for trial, acc in zip(broken, (0.10, 0.12, 0.15))] == [
        TrialScheduler.STOP
    ] * 3
    # Their top third starts at 0.13; the floor under the priors, at 0.43, still judges.
    assert report(asha, added(asha, {"lr": 0.5, "depth": 8}), 1, 0.30) == TrialScheduler.STOP
    assert report(asha, added(asha, {"lr": 1e-4, "depth": 2}), 1, 0.45) == TrialScheduler.CONTINUE


def test_a_slow_starter_within_one_standard_error_of_the_priors_goes_on() -> None:
    asha = scheduler(priors=[DEFAULTS, MODEL_1_4], scored_images=282)
    for prior, accuracy in ((added(asha, DEFAULTS), 0.48), (added(asha, MODEL_1_4), 0.46)):
        report(asha, prior, 1, accuracy)
        report(asha, prior, 3, accuracy + 0.08)
    slow = added(asha, {"lr": 1e-5, "depth": 3})
    assert report(asha, slow, 1, 0.44) == TrialScheduler.CONTINUE
    # At epoch 3 the floor is 0.54 - 0.030, from the priors' epoch-3 results.
    assert report(asha, slow, 3, 0.52) == TrialScheduler.CONTINUE
    lagging = added(asha, {"lr": 1e-6, "depth": 3})
    assert report(asha, lagging, 1, 0.45) == TrialScheduler.CONTINUE
    assert report(asha, lagging, 3, 0.50) == TrialScheduler.STOP


def test_a_prior_is_recognised_by_its_parameters_whatever_the_trial_adds() -> None:
    assert is_prior({**DEFAULTS, "image_size": 32, "epochs": 5}, [MODEL_1_4, DEFAULTS])
    assert not is_prior({"lr": 1e-3, "depth": 2, "image_size": 32}, [MODEL_1_4, DEFAULTS])
    assert not is_prior({"lr": 1e-3}, [DEFAULTS])  # missing a prior's parameter
    assert not is_prior(DEFAULTS, [])

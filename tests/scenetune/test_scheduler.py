"""ASHA's decisions for a short search that starts from priors, on Ray Tune's own Trial records."""

from __future__ import annotations

from ray.tune.experiment import Trial
from ray.tune.schedulers import TrialScheduler

from scenetune.scheduler import PriorAwareASHA, is_prior

DEFAULTS = {"lr": 1e-3, "depth": 1}
MODEL_1_4 = {"lr": 1e-3, "depth": 4}


def scheduler(priors: list[dict] | None = None, bootstrap: int | None = None) -> PriorAwareASHA:
    return PriorAwareASHA(
        priors=priors or [],
        bootstrap=bootstrap,
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


def test_a_prior_is_recognised_by_its_parameters_whatever_the_trial_adds() -> None:
    assert is_prior({**DEFAULTS, "image_size": 32, "epochs": 5}, [MODEL_1_4, DEFAULTS])
    assert not is_prior({"lr": 1e-3, "depth": 2, "image_size": 32}, [MODEL_1_4, DEFAULTS])
    assert not is_prior({"lr": 1e-3}, [DEFAULTS])  # missing a prior's parameter
    assert not is_prior(DEFAULTS, [])

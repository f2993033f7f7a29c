"""The SVM end of the feature tasks: precomputed kernels must give what SVC's own kernels give."""

from __future__ import annotations

import time
from collections import OrderedDict

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.svm import SVC

from trainables import svm
from trainables.svm import fit_and_score_svm, resolved_gamma, scale_features


@pytest.fixture(scope="module")
def digit_features() -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    x, y = load_digits(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(y))
    x, y = x[order].astype(np.float32), y[order]
    parts = {"train": slice(0, 900), "val": slice(900, 1300), "test": slice(1300, None)}
    train, val, test = scale_features("standard", *(x[parts[name]] for name in ("train", "val", "test")))
    return {"train": train, "val": val, "test": test}, {name: y[part] for name, part in parts.items()}


@pytest.mark.parametrize(
    "config",
    [
        {"kernel": "rbf"},
        {"kernel": "rbf", "gamma": 0.01, "C": 10.0},
        {"kernel": "linear", "C": 0.1},
        {"kernel": "poly", "degree": 2, "gamma": "auto"},
    ],
)
def test_precomputed_kernels_score_like_svc_computing_its_own(digit_features, config, monkeypatch) -> None:
    x, y = digit_features
    precomputed = fit_and_score_svm(config, x, y)
    monkeypatch.setattr(
        svm, "PRECOMPUTED_KERNEL_MAX_TRAIN", 0
    )  # the path for training sets too large to precompute
    own = fit_and_score_svm(config, x, y)
    one_sample = 1.0 / len(y["test"])
    assert abs(precomputed.test_acc - own.test_acc) <= one_sample and abs(
        precomputed.val_acc - own.val_acc
    ) <= 1.0 / len(y["val"])
    assert abs(precomputed.n_support - own.n_support) <= 2
    assert precomputed.test_acc > 0.9


def test_gamma_scale_is_the_one_svc_uses(digit_features) -> None:
    x, y = digit_features
    fitted = SVC(kernel="rbf", gamma="scale").fit(x["train"].astype(np.float64), y["train"])
    assert resolved_gamma("scale", x["train"].astype(np.float64)) == pytest.approx(fitted._gamma)


CONFIGS = [
    {"kernel": "rbf"},
    {"kernel": "rbf", "gamma": 0.01, "C": 10.0},
    {"kernel": "linear", "C": 0.1},
    {"kernel": "poly", "degree": 2, "gamma": "auto"},
]


def test_trials_on_the_same_features_share_one_kernel_basis(digit_features, monkeypatch) -> None:
    x, y = digit_features
    built = []
    compute = svm.kernel_basis
    monkeypatch.setattr(
        svm, "kernel_basis", lambda kernel, splits: built.append(kernel) or compute(kernel, splits)
    )
    monkeypatch.setattr(svm, "_recent_bases", OrderedDict())
    reused = [fit_and_score_svm(config, x, y, "digits|standard") for config in CONFIGS]
    assert built == ["rbf"]  # rbf, linear and poly all derive from one set of inner products
    assert [r.kernels_cached for r in reused] == [False, True, True, True]
    fresh = [fit_and_score_svm(config, x, y) for config in CONFIGS]
    assert len(built) == 1 + len(CONFIGS)
    assert [(r.train_acc, r.val_acc, r.test_acc, r.n_support) for r in reused] == [
        (r.train_acc, r.val_acc, r.test_acc, r.n_support) for r in fresh
    ]


def test_the_basis_cache_keeps_only_the_newest_when_over_its_bytes(digit_features, monkeypatch) -> None:
    x, y = digit_features
    monkeypatch.setattr(svm, "_recent_bases", OrderedDict())
    monkeypatch.setattr(svm, "BASIS_CACHE_BYTES", 1)
    fit_and_score_svm(CONFIGS[0], x, y, "first")
    fit_and_score_svm(CONFIGS[0], x, y, "second")
    assert list(svm._recent_bases) == [("second", "inner product")]


@pytest.fixture(scope="module")
def heavy_tailed_features() -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Digits with each row scaled by exp(N(0, 2)): like unscaled ReLU activations, whose norms span
    orders of magnitude. A poly kernel with a large gamma on them spans ~30 orders, and libsvm's
    solver, uncapped, does not converge on them within a minute."""
    x, y = load_digits(return_X_y=True)
    x = x * np.exp(np.random.default_rng(0).normal(size=(len(x), 1)) * 2.0)
    parts = {"train": slice(0, 300), "val": slice(300, 600), "test": slice(600, 900)}
    return {name: x[part] for name, part in parts.items()}, {name: y[part] for name, part in parts.items()}


ILL_CONDITIONED = {"kernel": "poly", "degree": 4, "gamma": 1.66, "C": 1.0}


@pytest.mark.parametrize("precompute", [True, False])
def test_a_fit_that_cannot_converge_stops_at_the_iteration_cap(
    heavy_tailed_features, precompute, monkeypatch
) -> None:
    x, y = heavy_tailed_features
    if not precompute:
        monkeypatch.setattr(svm, "PRECOMPUTED_KERNEL_MAX_TRAIN", 0)
    stuck = fit_and_score_svm(ILL_CONDITIONED, x, y)
    assert not stuck.converged
    assert stuck.solver_iterations == svm.solver_iteration_cap(len(y["train"]))
    standardised = dict(
        zip(("train", "val", "test"), scale_features("standard", x["train"], x["val"], x["test"]))
    )
    assert fit_and_score_svm({**ILL_CONDITIONED, "gamma": "scale"}, standardised, y).converged


def test_a_search_trial_whose_solver_was_cut_is_too_slow_and_a_refit_keeps_its_scores(
    heavy_tailed_features,
) -> None:
    x, y = heavy_tailed_features
    stuck = fit_and_score_svm(ILL_CONDITIONED, x, y)
    searched = svm.svm_report(stuck, time.perf_counter(), refit=False)
    assert searched["too_slow"] and searched["val_acc"] == 0.0 and np.isnan(searched["test_acc"])
    assert "had not converged" in searched["error_message"]
    refit = svm.svm_report(stuck, time.perf_counter(), refit=True)
    assert "too_slow" not in refit and refit["solver_converged"] is False
    assert (refit["val_acc"], refit["test_acc"]) == (stuck.val_acc, stuck.test_acc)
    converged = svm.svm_report(fit_and_score_svm({"kernel": "rbf"}, x, y), time.perf_counter(), refit=False)
    assert "too_slow" not in converged and converged["solver_converged"] is True


@pytest.mark.parametrize("precompute", [True, False])
def test_gamma_factor_multiplies_the_resolved_gamma(digit_features, precompute, monkeypatch) -> None:
    x, y = digit_features
    if not precompute:
        monkeypatch.setattr(svm, "PRECOMPUTED_KERNEL_MAX_TRAIN", 0)
    scale = resolved_gamma("scale", x["train"].astype(np.float64))
    relative = fit_and_score_svm({"kernel": "rbf", "gamma": "scale", "gamma_factor": 30.0}, x, y)
    absolute = fit_and_score_svm({"kernel": "rbf", "gamma": 30.0 * scale}, x, y)
    at_scale = fit_and_score_svm({"kernel": "rbf", "gamma": "scale"}, x, y)
    assert (relative.val_acc, relative.n_support) == (absolute.val_acc, absolute.n_support)
    assert relative.n_support != at_scale.n_support  # the factor changed the model


# ---------- selection by cross-validation on train + validation ----------


def test_a_cross_validated_trial_scores_like_scikit_learns_own_cross_validation(digit_features) -> None:
    x, y = digit_features
    config = {"kernel": "linear", "C": 0.1}  # a linear kernel has no gamma to resolve on other samples
    result = fit_and_score_svm(config, x, y, "digits", cross_validate_selection=True)
    pooled_x, pooled_y = np.concatenate([x["train"], x["val"]]), np.concatenate([y["train"], y["val"]])
    folds = StratifiedKFold(svm.SELECTION_FOLDS, shuffle=True, random_state=svm.SELECTION_FOLD_SEED)
    expected = cross_val_score(SVC(kernel="linear", C=0.1), pooled_x, pooled_y, cv=folds).mean()
    assert result.cv_folds == svm.SELECTION_FOLDS and result.scored_images == len(pooled_y) == 1300
    assert result.cv_acc == pytest.approx(expected, abs=1e-9)
    holdout = fit_and_score_svm(config, x, y, "digits holdout")  # the holdout scores are unchanged
    assert (result.val_acc, result.test_acc) == (holdout.val_acc, holdout.test_acc)


@pytest.mark.parametrize("kernel", ["rbf", "poly", "intersection"])
def test_each_kernel_is_cross_validated_on_slices_of_one_pooled_basis(digit_features, kernel) -> None:
    x, y = digit_features
    if kernel == "intersection":  # a kernel for non-negative histograms
        x = {name: np.abs(v) for name, v in x.items()}
    svm._recent_bases.clear()
    result = fit_and_score_svm({"kernel": kernel, "degree": 2}, x, y, "digits", cross_validate_selection=True)
    assert result.cv_acc is not None and 0.85 < result.cv_acc <= 1.0 and result.converged
    assert [key[0] for key in svm._recent_bases] == ["digits|pooled with validation"]
    report = svm.svm_report(result, time.perf_counter(), refit=False)
    assert report["val_acc"] == report["best_val_acc"] == result.cv_acc
    assert report["holdout_val_acc"] == result.val_acc and report["val_images"] == 1300


def test_a_search_trial_whose_folds_did_not_converge_is_too_slow(heavy_tailed_features) -> None:
    x, y = heavy_tailed_features
    stuck = fit_and_score_svm(ILL_CONDITIONED, x, y, cross_validate_selection=True)
    assert stuck.cv_folds and not stuck.converged
    assert svm.svm_report(stuck, time.perf_counter(), refit=False)["too_slow"]


def test_selection_falls_back_to_the_validation_split_where_folds_cannot_be_made(monkeypatch) -> None:
    labels = np.repeat(np.arange(3), 20)
    assert svm.selection_folds(labels[:45], labels[45:]) == svm.SELECTION_FOLDS
    rare = np.append(labels, 7)  # one image of class 7: no stratified fold can hold it out and train on it
    assert svm.selection_folds(rare, labels[:3]) == 0
    assert svm.selection_folds(np.append(labels, [7, 7]), labels[:3]) == 2
    monkeypatch.setattr(svm, "SELECTION_CV_MAX_SAMPLES", 49)
    assert svm.selection_folds(labels, labels[:3]) == 0
    x = np.random.default_rng(0).normal(size=(60, 4))
    result = fit_and_score_svm(
        {"kernel": "linear"},
        {"train": x[:40], "val": x[40:50], "test": x[50:]},
        {"train": labels[:40], "val": labels[40:50], "test": labels[50:]},
        cross_validate_selection=True,
    )
    assert result.cv_acc is None and result.cv_folds == 0 and result.scored_images == 10
    assert svm.svm_report(result, time.perf_counter(), refit=False)["val_acc"] == result.val_acc

"""The SVM end of the feature tasks: precomputed kernels must give what SVC's own kernels give."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest
from sklearn.datasets import load_digits
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

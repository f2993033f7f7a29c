"""The SVM end of the feature tasks: feature scaling and scikit-learn's SVC, one call per trial."""

from __future__ import annotations

import time
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics.pairwise import linear_kernel
from sklearn.model_selection import StratifiedKFold, cross_validate
from sklearn.preprocessing import StandardScaler, normalize
from sklearn.svm import SVC
from sklearn.utils.extmath import row_norms

from trainables.specs import SCALINGS, SVM_KERNELS


def with_validation_in_train(splits: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The splits of a refit on train + validation: train grows by the validation samples."""
    return {**splits, "train": np.concatenate([splits["train"], splits["val"]])}


def scale_features(scaling: str, train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """Fit the scaling on train only, then apply it to every split."""
    if scaling == "standard":
        scaler = StandardScaler().fit(train)
        return [scaler.transform(x) for x in (train, *others)]
    if scaling == "l2":
        return [normalize(x) for x in (train, *others)]
    if scaling == "none":
        return [train, *others]
    raise ValueError(f"scaling must be one of {SCALINGS}, got {scaling!r}")


# Up to this many training samples a trial computes the kernel matrices itself (BLAS, whole splits at
# once) and hands SVC precomputed kernels: libsvm's own kernel evaluations, one pair at a time, made
# prediction take most of a trial (benchmarks/run_benchmarks.py, measurement 3a). A 10k x 10k kernel
# is 800 MB; beyond it SVC computes its own.
PRECOMPUTED_KERNEL_MAX_TRAIN = 10_000
INTERSECTION_CHUNK_ELEMENTS = 2**24  # bounds the temporary (rows x len(b) x k) array to ~128 MiB


def histogram_intersection(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """K(x, y) = sum_i min(x_i, y_i), the usual kernel for bag-of-words histograms; in row chunks,
    since the broadcast minimum of all pairs would need len(a) x len(b) x k floats at once."""
    rows = max(1, INTERSECTION_CHUNK_ELEMENTS // max(1, b.shape[0] * b.shape[1]))
    kernel = np.empty((a.shape[0], b.shape[0]), dtype=np.float64)
    for start in range(0, a.shape[0], rows):
        kernel[start : start + rows] = np.minimum(a[start : start + rows, None, :], b[None, :, :]).sum(
            axis=-1
        )
    return kernel


# A search trial on features learnt from no labels (bovw on dense SIFT) is scored by stratified k-fold
# cross-validation on train + validation, not on the validation split alone. The fit costs a second
# or two, and on MIT_split's 282 validation images one standard error of an accuracy is ~3 points.
# Searches picked among trials 1-6 images apart there, and the pick tested up to 8 points below the
# one passed over (benchmarks/search_quality.py, seed 2). The same folds for every trial make the
# comparison between trials paired. Features of a network trained on train are not cross-validated:
# folds of the images it fitted flatter them (trainables/bovw.py, cross_validates).
SELECTION_FOLDS = 5
SELECTION_FOLD_SEED = 0
# Above this many train + validation samples a trial is scored on the validation split. Its pooled
# kernel would pass 200 MB, and a validation split of that size is seldom the noise it is on a small one.
SELECTION_CV_MAX_SAMPLES = 5_000


def selection_folds(train_labels: np.ndarray, val_labels: np.ndarray) -> int:
    """How many cross-validation folds score a search trial; 0: score it on the validation split (too
    many samples for a pooled kernel, or a class with fewer than 2 samples)."""
    pooled = np.concatenate([train_labels, val_labels])
    if len(pooled) > SELECTION_CV_MAX_SAMPLES or len(val_labels) == 0:
        return 0
    smallest_class = int(np.unique(pooled, return_counts=True)[1].min())
    folds = min(SELECTION_FOLDS, smallest_class)
    return folds if folds >= 2 else 0


@dataclass
class SVMResult:
    train_acc: float
    val_acc: float  # on the validation split, by the model fit on train
    test_acc: float
    fit_seconds: float
    n_support: int
    kernels_cached: bool = False  # the kernels came from a basis an earlier trial in this worker computed
    test_predicted: np.ndarray | None = None  # each test sample's predicted class
    solver_iterations: int = 0  # the most iterations libsvm took on one class pair
    converged: bool = True  # False: the solver reached solver_iteration_cap on some class pair
    cv_acc: float | None = None  # the mean accuracy over cv_folds folds of train + validation
    cv_folds: int = 0
    scored_images: int = 0  # how many images the selection score (cv_acc, else val_acc) was scored on


def solver_iteration_cap(train_samples: int) -> int:
    """libsvm's solver stops when its optimality gap closes, and a fit cannot be interrupted from
    Python. On a kernel whose entries span many orders of magnitude (a poly kernel with gamma 1.7 on
    unscaled activations: entries up to 1e22 on MIT_split) it never closes, and the trial held its
    worker until the sweep's budget ended. Fits that converged there took at most 1,709 iterations per
    class pair on 1,599 images; the cap is far above that, and stops a stuck pair within about a second."""
    return max(100_000, 100 * train_samples)


def resolved_gamma(gamma: Any, train: np.ndarray) -> float:
    """The RBF/poly gamma SVC would use: 'scale' = 1 / (n_features * var(train)), 'auto' = 1 / n_features."""
    if gamma == "scale":
        variance = float(train.var())
        return 1.0 / (train.shape[1] * variance) if variance > 0 else 1.0
    if gamma == "auto":
        return 1.0 / train.shape[1]
    return float(gamma)


@dataclass
class KernelBasis:
    """What every kernel of one feature set is derived from. Between the trials of a feature set only
    the kernel, gamma, degree and C change: the inner products with the training samples, the squared
    norms and SVC's automatic gammas do not, so they are computed once (BLAS, whole splits)."""

    inner: dict[
        str, np.ndarray
    ]  # split -> <x_split, x_train> for every pair; intersection: the kernel itself
    squared_norms: dict[str, np.ndarray]
    gammas: dict[str, float]  # 'scale' and 'auto', resolved on train


def _family(kernel: str) -> str:
    return "intersection" if kernel == "intersection" else "inner product"


def kernel_basis(kernel: str, x: dict[str, np.ndarray]) -> KernelBasis:
    splits = {name: np.asarray(v, dtype=np.float64) for name, v in x.items()}
    train = splits["train"]
    pairwise = histogram_intersection if kernel == "intersection" else linear_kernel
    return KernelBasis(
        inner={name: pairwise(v, train) for name, v in splits.items()},
        squared_norms={name: row_norms(v, squared=True) for name, v in splits.items()},
        gammas={automatic: resolved_gamma(automatic, train) for automatic in ("scale", "auto")},
    )


def kernel_from_basis(kernel: str, basis: KernelBasis, split: str, gamma: float, degree: int) -> np.ndarray:
    """K(x_split, x_train) as SVC defines each kernel (poly with coef0 = 0, SVC's default)."""
    inner = basis.inner[split]
    if kernel in ("intersection", "linear"):
        return inner
    if kernel == "poly":
        return (gamma * inner) ** degree
    if kernel == "rbf":
        # ||a - b||^2 = ||a||^2 - 2<a, b> + ||b||^2, clipped at 0 against rounding, as scikit-learn does.
        distances = basis.squared_norms[split][:, None] - 2.0 * inner + basis.squared_norms["train"][None, :]
        np.maximum(distances, 0.0, out=distances)
        if split == "train":
            np.fill_diagonal(distances, 0.0)
        return np.exp(-gamma * distances, out=distances)
    raise ValueError(f"kernel must be one of {SVM_KERNELS}, got {kernel!r}")


# The bases of the feature sets this worker process scored last, up to this many bytes (the newest is
# always kept). With actor reuse a worker runs trial after trial of the same sweep, so a cached trial
# costs its SVM fit, not its kernels' inner products (benchmarks/run_benchmarks.py, measurement 3).
BASIS_CACHE_BYTES = 512 * 2**20
_recent_bases: OrderedDict[tuple[str, str], KernelBasis] = OrderedDict()


def _nbytes(basis: KernelBasis) -> int:
    return sum(a.nbytes for a in basis.inner.values()) + sum(a.nbytes for a in basis.squared_norms.values())


def _basis_for(kernel: str, x: dict[str, np.ndarray], features_key: str | None) -> tuple[KernelBasis, bool]:
    """The basis for these features, and whether it was cached."""
    if features_key is None:
        return kernel_basis(kernel, x), False
    key = (features_key, _family(kernel))
    if key in _recent_bases:
        _recent_bases.move_to_end(key)
        return _recent_bases[key], True
    basis = _recent_bases[key] = kernel_basis(kernel, x)
    while len(_recent_bases) > 1 and sum(_nbytes(b) for b in _recent_bases.values()) > BASIS_CACHE_BYTES:
        _recent_bases.popitem(last=False)
    return basis, False


def fit_and_score_svm(
    config: dict[str, Any],
    x: dict[str, np.ndarray],
    y: dict[str, np.ndarray],
    features_key: str | None = None,
    cross_validate_selection: bool = False,
) -> SVMResult:
    """Fit SVC on x['train'] and score it on train, val and test.

    features_key names the exact features in x (source, scaling, normalisation): trials that pass the
    same key reuse their kernel basis. With cross_validate_selection (a search trial), the trial is
    also scored by cross-validation on train + validation (selection_folds), on kernels sliced from
    one basis of the pooled samples.
    """
    kernel = config.get("kernel", "rbf")
    folds = selection_folds(y["train"], y["val"]) if cross_validate_selection else 0
    if folds:  # at most SELECTION_CV_MAX_SAMPLES: always within PRECOMPUTED_KERNEL_MAX_TRAIN
        return _fit_with_cross_validation(config, x, y, features_key, folds)
    gamma = config.get("gamma", "scale")
    gamma_factor = float(config.get("gamma_factor", 1.0))
    degree = int(config.get("degree", 3))
    cap = solver_iteration_cap(len(x["train"]))
    started = time.perf_counter()
    if kernel == "intersection" or len(x["train"]) <= PRECOMPUTED_KERNEL_MAX_TRAIN:
        basis, cached = _basis_for(kernel, x, features_key)
        value = _gamma_value(gamma, gamma_factor, basis)
        svc = SVC(kernel="precomputed", C=float(config.get("C", 1.0)), max_iter=cap)
        train_kernel = kernel_from_basis(kernel, basis, "train", value, degree)
        _fit_reporting_convergence_ourselves(svc, train_kernel, y["train"])
        fit_seconds = time.perf_counter() - started
        features = {
            name: train_kernel if name == "train" else kernel_from_basis(kernel, basis, name, value, degree)
            for name in x
        }
    else:
        svc = SVC(
            kernel=kernel,
            C=float(config.get("C", 1.0)),
            gamma=resolved_gamma(gamma, np.asarray(x["train"], dtype=np.float64)) * gamma_factor,
            degree=degree,
            max_iter=cap,
        )
        _fit_reporting_convergence_ourselves(svc, x["train"], y["train"])
        fit_seconds = time.perf_counter() - started
        features, cached = x, False
    return _scored(svc, features, y, fit_seconds, cached, cap)


def _gamma_value(gamma: Any, gamma_factor: float, basis: KernelBasis) -> float:
    return (basis.gammas[gamma] if gamma in basis.gammas else float(gamma)) * gamma_factor


def _scored(
    svc: SVC,
    kernels: dict[str, np.ndarray],
    y: dict[str, np.ndarray],
    fit_seconds: float,
    cached: bool,
    cap: int,
) -> SVMResult:
    """A fitted SVC's accuracy on each split, given each split's features (or kernel against train)."""
    iterations = int(np.max(svc.n_iter_))
    predicted = {name: svc.predict(kernels[name]) for name in ("train", "val", "test")}
    accuracy = {name: float(np.mean(predicted[name] == y[name])) for name in predicted}
    return SVMResult(
        accuracy["train"],
        accuracy["val"],
        accuracy["test"],
        fit_seconds,
        int(svc.n_support_.sum()),
        cached,
        predicted["test"],
        iterations,
        converged=iterations < cap,
        scored_images=len(y["val"]),
    )


def _fit_with_cross_validation(
    config: dict[str, Any],
    x: dict[str, np.ndarray],
    y: dict[str, np.ndarray],
    features_key: str | None,
    folds: int,
) -> SVMResult:
    """The holdout fit (train -> val, test) and the cross-validated score, both on precomputed kernels
    sliced from one basis of train + validation (train first), so no inner product is computed twice.
    'scale' and 'auto' gammas are resolved on train + validation, as a refit resolves them."""
    kernel = config.get("kernel", "rbf")
    degree = int(config.get("degree", 3))
    n_train = len(x["train"])
    pooled_x = {"train": np.concatenate([x["train"], x["val"]]), "test": x["test"]}
    pooled_y = np.concatenate([y["train"], y["val"]])
    started = time.perf_counter()
    basis, cached = _basis_for(kernel, pooled_x, features_key and f"{features_key}|pooled with validation")
    value = _gamma_value(config.get("gamma", "scale"), float(config.get("gamma_factor", 1.0)), basis)
    pooled = kernel_from_basis(kernel, basis, "train", value, degree)
    kernels = {
        "train": pooled[:n_train, :n_train],
        "val": pooled[n_train:, :n_train],
        "test": kernel_from_basis(kernel, basis, "test", value, degree)[:, :n_train],
    }
    cap = solver_iteration_cap(n_train)
    svc = SVC(kernel="precomputed", C=float(config.get("C", 1.0)), max_iter=cap)
    _fit_reporting_convergence_ourselves(svc, kernels["train"], y["train"])
    fit_seconds = time.perf_counter() - started
    result = _scored(svc, kernels, y, fit_seconds, cached, cap)
    splitter = StratifiedKFold(folds, shuffle=True, random_state=SELECTION_FOLD_SEED)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        # scikit-learn slices a precomputed kernel by rows and columns for each fold (SVC is pairwise)
        scores = cross_validate(svc, pooled, pooled_y, cv=splitter, scoring="accuracy", return_estimator=True)
    fold_iterations = max(int(np.max(fitted.n_iter_)) for fitted in scores["estimator"])
    result.cv_acc = float(np.mean(scores["test_score"]))
    result.cv_folds = folds
    result.scored_images = len(pooled_y)
    result.solver_iterations = max(result.solver_iterations, fold_iterations)
    result.converged = result.converged and fold_iterations < cap
    return result


def _fit_reporting_convergence_ourselves(svc: SVC, features: np.ndarray, labels: np.ndarray) -> None:
    """The trial's report says whether the solver converged (solver_converged), so scikit-learn's
    warning, one line per trial in the worker's log, is not needed."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        svc.fit(features, labels)


def svm_report(result: SVMResult, started: float, refit: bool, **extra: Any) -> dict[str, Any]:
    """The core metrics every task shares; an SVM trial has a single 'epoch'.

    val_acc is the score the search selects by: the cross-validated accuracy when the trial was
    cross-validated (cv_folds > 0, over val_images images), else the validation split's
    (holdout_val_acc, always reported).

    A search trial whose solver reached its iteration cap is stopped, not scored (`too_slow`, as a
    network trial stopped at --max-trial-seconds): the searcher sees the worst score and learns to
    avoid that region, and the study cannot choose a model that depends on where the solver was cut.
    A refit keeps its scores, with solver_converged saying what they are.
    """
    selection_score = result.val_acc if result.cv_acc is None else result.cv_acc
    report = {
        "epoch": 1,
        "train_acc": result.train_acc,
        "val_acc": selection_score,
        "best_val_acc": selection_score,
        "holdout_val_acc": result.val_acc,
        "cv_folds": result.cv_folds,
        "val_images": result.scored_images,
        "test_acc": result.test_acc,
        "fit_seconds": result.fit_seconds,
        "n_support_vectors": result.n_support,
        "kernels_cached": result.kernels_cached,
        "solver_iterations": result.solver_iterations,
        "solver_converged": result.converged,
        "trial_seconds": time.perf_counter() - started,
        **extra,
    }
    if result.converged or refit:
        return report
    return {
        **report,
        "too_slow": True,
        "val_acc": 0.0,
        "best_val_acc": float("nan"),
        "test_acc": float("nan"),
        "error_message": f"the SVM solver had not converged after {result.solver_iterations:,} iterations "
        "on a class pair (its kernel is likely ill-conditioned: try scaling the features)",
    }

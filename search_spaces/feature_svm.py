"""Task 2: deep features + SVM. A hidden layer of a trained MLP feeds scikit-learn's SVC."""

from __future__ import annotations

from typing import Any

from search_spaces.base import Pick, Preset, TaskSpace, search_rbf_gamma
from trainables.specs import SCALINGS

STUDY_LAYERS = ["second", "third", "fourth", "fifth"]

DEFAULTS: dict[str, Any] = {
    "layer": "second",
    "kernel": "rbf",
    "C": 1.0,
    "gamma": "scale",
    "gamma_factor": 1.0,  # multiplies gamma: the searched RBF gamma is relative to SVC's 'scale'
    "degree": 3,
    "scaling": "standard",
}


def _layer_points(context: dict[str, Any]) -> list[dict[str, Any]]:
    """The study's layers second..fifth, where the source model has them."""
    return [{"layer": layer} for layer in context.get("layers", STUDY_LAYERS) if layer in STUDY_LAYERS]


def _layers(context: dict[str, Any]) -> list[str]:
    return list(context.get("layers", STUDY_LAYERS))


PRESETS = {
    "layer": Preset(
        "layer",
        "hidden layers second .. fifth (those the model has), RBF kernel",
        _layer_points,
        swept=("layer",),
    ),
}


def optuna_space(pick: Pick) -> None:
    pick.categorical("layer", _layers(pick.context))
    kernel = pick.categorical("kernel", ["rbf", "linear", "poly"])
    pick.float("C", 1e-3, 1e3, log=True)
    if kernel == "rbf":
        search_rbf_gamma(pick)
    # No gamma for poly: with coef0 = 0 its kernel is (gamma <x, y>)^degree, gamma^degree times that of
    # 'scale', which is the same model as C times gamma^degree. C is searched already, and a large
    # absolute gamma only made the kernel ill-conditioned (trainables/svm.solver_iteration_cap).
    if kernel == "poly":
        pick.int("degree", 2, 4)
    pick.categorical("scaling", SCALINGS)


SPACE = TaskSpace(
    task="feature_svm",
    description="deep features + SVM: a trained MLP's hidden layer (--from) -> scaling -> SVC",
    defaults=DEFAULTS,
    optuna_space=optuna_space,
    presets=PRESETS,
    optuna_description="layer, kernel (rbf, linear, poly), C (log), RBF gamma (scale, or 0.01..100 x scale, log), poly degree, scaling",
    optuna_choices={"layer": _layers},
)

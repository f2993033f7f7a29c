"""Task 2 as a Ray Tune trainable: an SVM on a trained MLP's layer activations.

Features are extracted once per (checkpoint, layer) before the sweep; a trial only scales them and
fits the SVM, on kernels derived from inner products that each worker computes once per (layer,
scaling), so it costs the fit and little else.
"""

from __future__ import annotations

import time
from typing import Any, Callable

from ray import tune

from scenetune.data import TrialData
from trainables.features import FeatureData, network_features
from trainables.svm import SCALINGS, check_svm_config, fit_and_score_svm, scale_features, svm_report


def check_config(config: dict[str, Any], n_classes: int, context: dict[str, Any] | None = None) -> None:
    check_svm_config(config)
    if config.get("scaling", "standard") not in SCALINGS:
        raise ValueError(f"scaling must be one of {SCALINGS}, got {config.get('scaling')!r}")
    layers = (context or {}).get("layers")
    if layers is not None and config["layer"] not in layers:
        raise ValueError(f"the source model has no layer {config['layer']!r}; its hidden layers are: {', '.join(layers)}")


def build_inputs(data: TrialData, source, values: Callable[[str], list], data_key: str) -> FeatureData:
    return network_features(source.checkpoint, data, values("layer"), data_key)


def train_feature_svm(config: dict[str, Any], data: FeatureData) -> None:
    started = time.perf_counter()
    features = data.at(config["layer"])
    scaling = config.get("scaling", "standard")
    train, val, test = scale_features(scaling, features["train"], features["val"], features["test"])
    features_key = f"{data.keys[config['layer']]}|scaling={scaling}"
    result = fit_and_score_svm(config, {"train": train, "val": val, "test": test}, data.labels, features_key)
    tune.report(svm_report(result, started, n_features=int(train.shape[1])))

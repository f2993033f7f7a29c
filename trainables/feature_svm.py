"""Task 2 as a Ray Tune trainable: an SVM on a trained MLP's layer activations.

Features are extracted once per (checkpoint, layer) before the sweep; a trial only scales them and
fits the SVM, on kernels derived from inner products that each worker computes once per (layer,
scaling), so it costs the fit and little else.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from scenetune.experiment import TRAIN_AND_VAL, trains_on_validation
from search_spaces import feature_svm as feature_svm_space
from trainables.specs import SCALINGS, check_svm_config
from trainables.task import Task

if TYPE_CHECKING:
    from scenetune.data import TrialData
    from trainables.features import FeatureData


def check_config(config: dict[str, Any], n_classes: int, context: dict[str, Any] | None = None) -> None:
    check_svm_config(config)
    if config.get("scaling", "standard") not in SCALINGS:
        raise ValueError(f"scaling must be one of {SCALINGS}, got {config.get('scaling')!r}")
    layers = (context or {}).get("layers")
    if layers is not None and config["layer"] not in layers:
        raise ValueError(
            f"the source model has no layer {config['layer']!r}; its hidden layers are: {', '.join(layers)}"
        )


def train_feature_svm(config: dict[str, Any], data: FeatureData) -> None:
    from trainables.predictions import report_with_test_predictions
    from trainables.svm import fit_and_score_svm, scale_features, svm_report, with_validation_in_train

    started = time.perf_counter()
    features, labels = data.at(config["layer"]), data.labels
    fit_on = "train"
    if trains_on_validation(config):  # a refit: the SVM learns from validation too
        features, labels = with_validation_in_train(features), with_validation_in_train(labels)
        fit_on = TRAIN_AND_VAL
    scaling = config.get("scaling", "standard")
    train, val, test = scale_features(scaling, features["train"], features["val"], features["test"])
    features_key = f"{data.keys[config['layer']]}|scaling={scaling}|fit={fit_on}"
    result = fit_and_score_svm(config, {"train": train, "val": val, "test": test}, labels, features_key)
    report = svm_report(result, started, bool(config.get("refit")), n_features=int(train.shape[1]))
    report_with_test_predictions(report, result.test_predicted, labels["test"])


class FeatureSVMTask(Task):
    space = feature_svm_space.SPACE
    source_kinds = ("network",)  # any task whose networks are feature sources (Task.feature_source)
    source_required = True
    seeded = False  # SVC's fit on fixed features is deterministic

    def check_config(self, config: dict[str, Any], n_classes: int, context: dict[str, Any]) -> None:
        check_config(config, n_classes, context)

    def build_inputs(
        self,
        data: TrialData,
        source: Any,
        values: Callable[[str], list[Any]],
        data_key: str,
        cache_dir: str | None,
    ) -> FeatureData:
        from trainables.features import network_features

        return network_features(source.checkpoint, data, values("layer"), data_key)

    def train(self, config: dict[str, Any], data: FeatureData) -> None:
        train_feature_svm(config, data)

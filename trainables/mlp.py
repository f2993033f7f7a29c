"""Task 1 as a Ray Tune trainable: an MLP on the image's pixels."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from search_spaces import mlp as mlp_space
from trainables.specs import check_mlp_config
from trainables.task import Task

if TYPE_CHECKING:
    from torch import nn

    from scenetune.data import TrialData
    from trainables.models import MLP


def train_statistics(config: dict[str, Any], data: TrialData) -> tuple[np.ndarray, np.ndarray]:
    """Channel mean and std of the training split at the config's image size (the model's input scaling)."""
    from trainables.models import channel_statistics

    return channel_statistics(data.at_size(int(config["image_size"]))["train"].x)


def build_mlp(config: dict[str, Any], data: TrialData) -> tuple[MLP, dict[str, Any]]:
    """The model a config describes, normalised with the training split's channel statistics."""
    from trainables.models import MLP, MLPSpec

    spec = MLPSpec.from_config(config, n_classes=len(data.classes))
    mean, std = train_statistics(config, data)
    description = {
        "model": "mlp",
        "spec": spec.to_dict(),
        "classes": data.classes,
        "image_size": spec.input_size,
    }
    return MLP(spec, mean, std), description


class MLPTask(Task):
    space = mlp_space.SPACE
    model_kind = "mlp"
    feature_source = True

    def check_config(self, config: dict[str, Any], n_classes: int, context: dict[str, Any]) -> None:
        check_mlp_config(config, n_classes, context)

    def train(self, config: dict[str, Any], data: TrialData) -> None:
        from trainables.training import TrainingPlan, fit_and_report, seed_torch_for_trial

        seed = self.trial_seed(config)
        seed_torch_for_trial(seed)
        model, description = build_mlp(config, data)
        fit_and_report(
            TrainingPlan(model, description), data.at_size(int(config["image_size"])), config, seed
        )

    def build_model(self, description: dict[str, Any]) -> nn.Module:
        from trainables.models import MLP, MLPSpec

        return MLP(MLPSpec(**description["spec"]))

    def network_for(self, config: dict[str, Any], n_classes: int) -> nn.Module:
        from trainables.models import MLP, MLPSpec

        return MLP(MLPSpec.from_config(config, n_classes))

"""Task 1 as a Ray Tune trainable: an MLP on the image's pixels."""

from __future__ import annotations

from typing import Any

import numpy as np

from scenetune.data import TrialData
from trainables.models import MLP, MLPSpec, channel_statistics
from trainables.training import TrainingPlan, fit_and_report


def train_statistics(config: dict[str, Any], data: TrialData) -> tuple[np.ndarray, np.ndarray]:
    """Channel mean and std of the training split at the config's image size (the model's input scaling)."""
    return channel_statistics(data.at_size(int(config["image_size"]))["train"].x)


def build_mlp(config: dict[str, Any], data: TrialData) -> tuple[MLP, dict[str, Any]]:
    """The model a config describes, normalised with the training split's channel statistics."""
    spec = MLPSpec.from_config(config, n_classes=len(data.classes))
    mean, std = train_statistics(config, data)
    description = {"model": "mlp", "spec": spec.to_dict(), "classes": data.classes, "image_size": spec.input_size}
    return MLP(spec, mean, std), description


def train_mlp(config: dict[str, Any], data: TrialData) -> None:
    model, description = build_mlp(config, data)
    fit_and_report(TrainingPlan(model, description), data.at_size(int(config["image_size"])), config)

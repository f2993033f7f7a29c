"""Task 3 as a Ray Tune trainable: one MLP shared by every patch, aggregated into the image's class."""

from __future__ import annotations

from typing import Any

from scenetune.data import TrialData
from trainables.mlp import check_training_config, train_statistics
from trainables.models import TRAIN_ON, PatchMLP, PatchSpec, patch_level_loss
from trainables.training import TrainingPlan, classification_loss, fit_and_report


def check_config(config: dict[str, Any], n_classes: int, context: dict[str, Any] | None = None) -> None:
    """Raise ValueError for a configuration that cannot be built, before any trial starts."""
    PatchSpec.from_config(config, n_classes)
    check_training_config(config)
    train_on = config.get("train_on", "image")
    if train_on not in TRAIN_ON:
        raise ValueError(f"train_on must be one of {TRAIN_ON}, got {train_on!r}")
    if train_on == "image" and config.get("aggregation") == "vote":
        raise ValueError("aggregation 'vote' has no gradient; use it with train_on=patch")


def build_patch_mlp(config: dict[str, Any], data: TrialData) -> tuple[PatchMLP, dict[str, Any]]:
    spec = PatchSpec.from_config(config, n_classes=len(data.classes))
    mean, std = train_statistics(config, data)
    description = {"model": "patch_mlp", "spec": spec.to_dict(), "classes": data.classes, "image_size": spec.image_size}
    return PatchMLP(spec, mean, std), description


def train_patch_mlp(config: dict[str, Any], data: TrialData) -> None:
    model, description = build_patch_mlp(config, data)
    loss = patch_level_loss if config.get("train_on", "image") == "patch" else classification_loss
    fit_and_report(TrainingPlan(model, description, loss_fn=loss), data.at_size(int(config["image_size"])), config)

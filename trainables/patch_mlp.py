"""Task 3 as a Ray Tune trainable: one MLP shared by every patch, aggregated into the image's class."""

from __future__ import annotations

from typing import Any

from scenetune.data import TrialData
from trainables.mlp import train_statistics
from trainables.models import PatchMLP, PatchSpec, patch_level_loss
from trainables.training import TrainingPlan, classification_loss, fit_and_report


def build_patch_mlp(config: dict[str, Any], data: TrialData) -> tuple[PatchMLP, dict[str, Any]]:
    spec = PatchSpec.from_config(config, n_classes=len(data.classes))
    mean, std = train_statistics(config, data)
    description = {"model": "patch_mlp", "spec": spec.to_dict(), "classes": data.classes, "image_size": spec.image_size}
    return PatchMLP(spec, mean, std), description


def train_patch_mlp(config: dict[str, Any], data: TrialData) -> None:
    model, description = build_patch_mlp(config, data)
    loss = patch_level_loss if config.get("train_on", "image") == "patch" else classification_loss
    fit_and_report(TrainingPlan(model, description, loss_fn=loss), data.at_size(int(config["image_size"])), config)

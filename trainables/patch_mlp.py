"""Task 3 as a Ray Tune trainable: one MLP shared by every patch, aggregated into the image's class."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from search_spaces import patch_mlp as patch_mlp_space
from trainables.mlp import train_statistics
from trainables.specs import check_patch_mlp_config
from trainables.task import Task

if TYPE_CHECKING:
    from torch import nn

    from scenetune.data import TrialData
    from trainables.models import PatchMLP
    from trainables.training import TrainingPlan


def build_patch_mlp(config: dict[str, Any], data: TrialData) -> tuple[PatchMLP, dict[str, Any]]:
    from trainables.models import PatchMLP, PatchSpec

    spec = PatchSpec.from_config(config, n_classes=len(data.classes))
    mean, std = train_statistics(config, data)
    description = {
        "model": "patch_mlp",
        "spec": spec.to_dict(),
        "classes": data.classes,
        "image_size": spec.image_size,
    }
    return PatchMLP(spec, mean, std), description


def patch_training_plan(model: PatchMLP, description: dict[str, Any]) -> TrainingPlan:
    """Train on patches: every patch is a sample with its image's label, and a batch mixes patches of
    many images. Batches of whole images' patches, whose gradients average patches sharing one label,
    reached val 0.663 on MIT_split where these reach 0.730 (BENCHMARKS.md, the levers table)."""
    from trainables.models import patch_sample_loss, patches_as_samples
    from trainables.training import DeviceSplit, TrainingPlan

    def as_patches(images: DeviceSplit) -> DeviceSplit:
        return DeviceSplit(*patches_as_samples(images.x, images.y, model.spec.patch_size))

    return TrainingPlan(model, description, loss_fn=patch_sample_loss, training_samples=as_patches)


class PatchMLPTask(Task):
    space = patch_mlp_space.SPACE
    model_kind = "patch_mlp"

    def check_config(self, config: dict[str, Any], n_classes: int, context: dict[str, Any]) -> None:
        check_patch_mlp_config(config, n_classes, context)

    def train(self, config: dict[str, Any], data: TrialData) -> None:
        from trainables.training import TrainingPlan, fit_and_report, seed_torch_for_trial

        seed = self.trial_seed(config)
        seed_torch_for_trial(seed)
        model, description = build_patch_mlp(config, data)
        if config.get("train_on", "image") == "patch":
            plan = patch_training_plan(model, description)
        else:
            plan = TrainingPlan(model, description)
        fit_and_report(plan, data.at_size(int(config["image_size"])), config, seed)

    def build_model(self, description: dict[str, Any]) -> nn.Module:
        from trainables.models import MLPSpec, PatchMLP, PatchSpec

        spec = description["spec"]
        return PatchMLP(PatchSpec(**{**spec, "mlp": MLPSpec(**spec["mlp"])}))

    def network_for(self, config: dict[str, Any], n_classes: int) -> nn.Module:
        from trainables.models import PatchMLP, PatchSpec

        return PatchMLP(PatchSpec.from_config(config, n_classes))

    def hidden_layers(self, description: dict[str, Any]) -> list[str]:
        from trainables.specs import hidden_layer_name

        return [hidden_layer_name(i) for i in range(int(description["spec"]["mlp"]["depth"]))]

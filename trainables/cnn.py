"""A small CNN as a Ray Tune trainable: the reference row of the study.

image -> conv blocks (conv, optional batch norm, ReLU, 2x2 max-pool; channels double per block) ->
`first` (the flattened feature map) -> dense hidden layers `second`, `third`, ... -> `output`. The
dense layers carry the study's names, so `layer-output` and `feature_svm --from` treat it as they
treat an MLP. This module is imported by the driver to register the task, so torch is imported only
where a network is built.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any

from search_spaces import cnn as cnn_space
from trainables.mlp import train_statistics
from trainables.specs import check_training_config, hidden_layer_name
from trainables.task import Task

if TYPE_CHECKING:
    from torch import nn

    from scenetune.data import TrialData

MAX_CHANNELS = 512


@dataclass(frozen=True)
class CNNSpec:
    """Everything that fixes the CNN's architecture."""

    input_size: int
    n_classes: int
    conv_depth: int = 3
    conv_width: int = 32
    kernel_size: int = 3
    batch_norm: bool = True
    depth: int = 1
    width: int = 256
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if self.conv_depth < 1 or self.input_size >> self.conv_depth < 1:
            raise ValueError(
                f"conv_depth {self.conv_depth} does not fit a {self.input_size}x{self.input_size} image: each block halves it"
            )
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd and positive, got {self.kernel_size}")
        if self.conv_width < 1 or self.width < 1 or self.depth < 0:
            raise ValueError(
                f"conv_width and width must be positive and depth >= 0, got {self.conv_width}, {self.width}, {self.depth}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {self.dropout}")

    @classmethod
    def from_config(cls, config: dict[str, Any], n_classes: int) -> CNNSpec:
        known = {f.name for f in fields(cls)} - {"input_size", "n_classes"}
        return cls(
            input_size=int(config["image_size"]),
            n_classes=n_classes,
            **{k: config[k] for k in known if k in config},
        )

    def channels(self) -> list[int]:
        return [min(self.conv_width << i, MAX_CHANNELS) for i in range(self.conv_depth)]

    def flat_features(self) -> int:
        side = self.input_size >> self.conv_depth
        return self.channels()[-1] * side * side


@functools.cache
def network_class() -> type:
    """The CNN module class, defined on first use so that importing this module needs no torch."""
    from collections import OrderedDict

    import numpy as np
    import torch
    from torch import nn

    from trainables.models import register_channel_statistics

    class SmallCNN(nn.Module):
        def __init__(
            self, spec: CNNSpec, channel_mean: np.ndarray | None = None, channel_std: np.ndarray | None = None
        ):
            super().__init__()
            self.spec = spec
            register_channel_statistics(self, channel_mean, channel_std, (1, 3, 1, 1))  # channels first
            layers: OrderedDict[str, nn.Module] = OrderedDict()
            in_channels = 3
            for index, channels in enumerate(spec.channels()):
                block: list[nn.Module] = [
                    nn.Conv2d(
                        in_channels,
                        channels,
                        spec.kernel_size,
                        padding=spec.kernel_size // 2,
                        bias=not spec.batch_norm,
                    )
                ]
                if spec.batch_norm:
                    block.append(nn.BatchNorm2d(channels))
                block += [nn.ReLU(), nn.MaxPool2d(2)]
                layers[f"conv{index + 1}"] = nn.Sequential(*block)
                in_channels = channels
            layers["first"] = nn.Flatten()
            in_features = spec.flat_features()
            for index in range(spec.depth):
                dense: list[nn.Module] = [nn.Linear(in_features, spec.width), nn.ReLU()]
                if spec.dropout > 0:
                    dense.append(nn.Dropout(spec.dropout))
                layers[hidden_layer_name(index)] = nn.Sequential(*dense)
                in_features = spec.width
            layers["output"] = nn.Linear(in_features, spec.n_classes)
            self.layers = nn.ModuleDict(layers)

        @property
        def layer_names(self) -> list[str]:
            return list(self.layers.keys())

        def forward_until(self, images: torch.Tensor, layer: str | None = None) -> torch.Tensor:
            """uint8 or float pixels (N, S, S, 3) -> the named layer's output (the logits by default)."""
            hidden = (images.float().permute(0, 3, 1, 2) - self.channel_mean) / self.channel_std
            for name, module in self.layers.items():
                hidden = module(hidden)
                if name == layer:
                    return hidden
            return hidden

        def forward(self, images: torch.Tensor) -> torch.Tensor:
            return self.forward_until(images)

    return SmallCNN


def build_cnn(config: dict[str, Any], data: TrialData) -> tuple[nn.Module, dict[str, Any]]:
    """The network a config describes, normalised with the training split's channel statistics."""
    spec = CNNSpec.from_config(config, n_classes=len(data.classes))
    mean, std = train_statistics(config, data)
    description = {
        "model": "cnn",
        "spec": asdict(spec),
        "classes": data.classes,
        "image_size": spec.input_size,
    }
    return network_class()(spec, mean, std), description


class CNNTask(Task):
    space = cnn_space.SPACE
    model_kind = "cnn"
    feature_source = True

    def check_config(self, config: dict[str, Any], n_classes: int, context: dict[str, Any]) -> None:
        CNNSpec.from_config(config, n_classes)
        check_training_config(config)

    def train(self, config: dict[str, Any], data: TrialData) -> None:
        from trainables.training import TrainingPlan, fit_and_report, seed_torch_for_trial

        seed = self.trial_seed(config)
        seed_torch_for_trial(seed)
        model, description = build_cnn(config, data)
        fit_and_report(
            TrainingPlan(model, description), data.at_size(int(config["image_size"])), config, seed
        )

    def build_model(self, description: dict[str, Any]) -> nn.Module:
        return network_class()(CNNSpec(**description["spec"]))

    def network_for(self, config: dict[str, Any], n_classes: int) -> nn.Module:
        return network_class()(CNNSpec.from_config(config, n_classes))

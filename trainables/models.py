"""The study's networks, built from plain config dicts, with the study's layer names.

Layers are named as in the study's Keras models: `first` (the reshape), `second`, `third`, ... for
the hidden layers, `output` for the class scores. Input normalisation lives inside the model (as
buffers), so a checkpoint alone maps raw uint8 images to predictions and layer outputs.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from trainables.specs import AGGREGATIONS, MLPSpec, PatchSpec, hidden_layer_name

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "elu": nn.ELU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
}
KERAS_SMALL_STDDEV = 0.05  # Keras' default for RandomNormal, TruncatedNormal and RandomUniform
TRUNCATED_NORMAL_STD_CORRECTION = 0.87962566103423978  # std of N(0,1) truncated to [-2, 2]


def _truncated_normal(weight: torch.Tensor, std: float) -> None:
    nn.init.trunc_normal_(weight, std=std, a=-2 * std, b=2 * std)


def _fans(weight: torch.Tensor) -> tuple[int, int]:
    fan_out, fan_in = weight.shape
    return fan_in, fan_out


def _glorot_normal(weight: torch.Tensor) -> None:
    # Keras' GlorotNormal: a truncated normal whose std is corrected for the truncation.
    fan_in, fan_out = _fans(weight)
    _truncated_normal(weight, math.sqrt(2.0 / (fan_in + fan_out)) / TRUNCATED_NORMAL_STD_CORRECTION)


def _he_normal(weight: torch.Tensor) -> None:
    fan_in, _ = _fans(weight)
    _truncated_normal(weight, math.sqrt(2.0 / fan_in) / TRUNCATED_NORMAL_STD_CORRECTION)


INITIALIZERS: dict[str, Callable[[torch.Tensor], None]] = {
    "glorot_normal": _glorot_normal,
    "glorot_uniform": nn.init.xavier_uniform_,
    "truncated_normal": lambda w: _truncated_normal(w, KERAS_SMALL_STDDEV),
    "random_normal": lambda w: nn.init.normal_(w, std=KERAS_SMALL_STDDEV),
    "random_uniform": lambda w: nn.init.uniform_(w, -KERAS_SMALL_STDDEV, KERAS_SMALL_STDDEV),
    "he_normal": _he_normal,
}


def register_channel_statistics(
    module: nn.Module, mean: np.ndarray | None, std: np.ndarray | None, shape: tuple[int, ...]
) -> None:
    """The input's per-channel mean and std as buffers `channel_mean` / `channel_std` (in state_dict, so
    they travel with the weights), in pixel units (0..255), shaped to broadcast over the model's input."""
    mean = np.zeros(3) if mean is None else np.asarray(mean, dtype=np.float64)
    std = np.ones(3) if std is None else np.asarray(std, dtype=np.float64)
    module.register_buffer("channel_mean", torch.tensor(mean, dtype=torch.float32).view(shape))
    module.register_buffer(
        "channel_std", torch.tensor(np.maximum(std, 1e-6), dtype=torch.float32).view(shape)
    )


class MLP(nn.Module):
    """Flatten -> hidden dense blocks (Linear, optional BatchNorm, activation, optional Dropout) -> output."""

    def __init__(
        self, spec: MLPSpec, channel_mean: np.ndarray | None = None, channel_std: np.ndarray | None = None
    ):
        super().__init__()
        self.spec = spec
        register_channel_statistics(self, channel_mean, channel_std, (1, 1, 1, 3))  # images are (N, S, S, 3)
        layers: OrderedDict[str, nn.Module] = OrderedDict(first=nn.Flatten())
        in_features = spec.input_size * spec.input_size * 3
        for index, width in enumerate(spec.hidden_widths()):
            block: list[nn.Module] = [nn.Linear(in_features, width)]
            if spec.batch_norm:
                block.append(nn.BatchNorm1d(width))
            block.append(ACTIVATIONS[spec.activation]())
            if spec.dropout > 0:
                block.append(nn.Dropout(spec.dropout))
            layers[hidden_layer_name(index)] = nn.Sequential(*block)
            in_features = width
        layers["output"] = nn.Linear(in_features, spec.n_classes)
        self.layers = nn.ModuleDict(layers)
        self._initialize(INITIALIZERS[spec.initializer])

    def _initialize(self, initializer: Callable[[torch.Tensor], None]) -> None:
        for module in self.modules():
            if isinstance(module, nn.Linear):
                initializer(module.weight)
                nn.init.zeros_(module.bias)

    @property
    def layer_names(self) -> list[str]:
        return list(self.layers.keys())

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 or float pixel values (N, S, S, 3) in 0..255 -> standardised float."""
        return (images.float() - self.channel_mean) / self.channel_std

    def forward_until(self, images: torch.Tensor, layer: str | None = None) -> torch.Tensor:
        hidden = self.normalize(images)
        for name, module in self.layers.items():
            hidden = module(hidden)
            if name == layer:
                return hidden
        return hidden

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.forward_until(images)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def channel_statistics(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std of uint8 images (N, S, S, 3), in pixel units."""
    flat = images.reshape(-1, 3).astype(np.float64)
    return flat.mean(axis=0), flat.std(axis=0)


def check_layer_name(model: nn.Module, layer: str) -> None:
    names = model.layer_names
    if layer not in names:
        raise ValueError(f"unknown layer {layer!r}; valid layers: {', '.join(names)}")


@torch.inference_mode()
def layer_output(
    model: nn.Module, images: np.ndarray | torch.Tensor, layer: str, batch_size: int = 1024
) -> torch.Tensor:
    """Activations of the named layer for a batch of images (N, S, S, 3, pixel values 0..255).

    Runs in evaluation mode, in batches, on the model's device; returns a tensor on that device.
    """
    check_layer_name(model, layer)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    tensor = torch.as_tensor(images)
    try:
        outputs = [
            model.forward_until(tensor[start : start + batch_size].to(device), layer)
            for start in range(0, len(tensor), batch_size)
        ]
    finally:
        model.train(was_training)
    return torch.cat(outputs)


SMALLEST_PROBABILITY = 1e-12


def aggregate_patch_scores(patch_logits: torch.Tensor, aggregation: str) -> torch.Tensor:
    """Per-patch class logits (N, P, C) -> image class probabilities (N, C).

    mean / max / min: that statistic of the patches' softmax, renormalised to sum to one;
    mean_logits: softmax of the mean logits; vote: share of patches whose top class it is.
    """
    if aggregation == "mean_logits":
        return torch.softmax(patch_logits.mean(dim=1), dim=-1)
    if aggregation == "vote":
        votes = F.one_hot(patch_logits.argmax(dim=-1), patch_logits.shape[-1]).float()
        return votes.mean(dim=1)
    probabilities = torch.softmax(patch_logits, dim=-1)
    if aggregation == "mean":
        scores = probabilities.mean(dim=1)
    elif aggregation == "max":
        scores = probabilities.amax(dim=1)
    elif aggregation == "min":
        scores = probabilities.amin(dim=1)
    else:
        raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got {aggregation!r}")
    return scores / scores.sum(dim=-1, keepdim=True)


def split_into_patches(images: torch.Tensor, patch_size: int) -> torch.Tensor:
    """(N, S, S, 3) -> (N, P, p, p, 3), non-overlapping patches in row-major order."""
    n, size, _, channels = images.shape
    per_side = size // patch_size
    grid = images.reshape(n, per_side, patch_size, per_side, patch_size, channels)
    return grid.permute(0, 1, 3, 2, 4, 5).reshape(n, per_side * per_side, patch_size, patch_size, channels)


def flat_patches(images: torch.Tensor, patch_size: int) -> torch.Tensor:
    """(N, S, S, 3) -> (N * P, p, p, 3): each image's patches in row-major order, image after image."""
    patches = split_into_patches(images, patch_size)
    return patches.reshape(-1, *patches.shape[2:])


class PatchMLP(nn.Module):
    """Image -> patches -> one MLP shared by every patch -> per-patch class scores -> aggregation.

    `forward` returns image-level log-probabilities, so the generic classification loss and
    evaluation apply unchanged; `patch_logits` serves training on patches.
    """

    def __init__(
        self, spec: PatchSpec, channel_mean: np.ndarray | None = None, channel_std: np.ndarray | None = None
    ):
        super().__init__()
        self.spec = spec
        self.mlp = MLP(spec.mlp, channel_mean, channel_std)

    @property
    def layer_names(self) -> list[str]:
        return self.mlp.layer_names

    def _flat_patches(self, images: torch.Tensor) -> torch.Tensor:
        return flat_patches(images, self.spec.patch_size)

    def patch_logits(self, images: torch.Tensor) -> torch.Tensor:
        return self.mlp(self._flat_patches(images)).view(len(images), self.spec.patches_per_image, -1)

    def forward_until(self, images: torch.Tensor, layer: str | None = None) -> torch.Tensor:
        """A layer's activations per patch: (N, P, features)."""
        return self.mlp.forward_until(self._flat_patches(images), layer).view(
            len(images), self.spec.patches_per_image, -1
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        probabilities = aggregate_patch_scores(self.patch_logits(images), self.spec.aggregation)
        return torch.log(probabilities.clamp_min(SMALLEST_PROBABILITY))


def patches_as_samples(
    images: torch.Tensor, labels: torch.Tensor, patch_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Every patch of every image as a sample of its own, carrying its image's label."""
    patches = flat_patches(images, patch_size)
    return patches, labels.repeat_interleave(len(patches) // len(images))


def patch_sample_loss(
    model: PatchMLP, patches: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Training on patches: the shared MLP scores each patch against its image's label."""
    logits = model.mlp(patches)
    return F.cross_entropy(logits, labels), logits.argmax(dim=1)

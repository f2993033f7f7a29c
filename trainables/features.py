"""Features from a trained network, computed once per (checkpoint, layer) in the driver and shared
with every SVM trial through Ray's object store."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from scenetune.data import TrialData
from trainables.checkpoints import load_model
from trainables.models import layer_output

SPLITS = ("train", "val", "test")


@dataclass
class FeatureData:
    """Per feature source (a layer, or a descriptor setting): arrays per split, and the labels."""

    classes: list[str]
    features: dict[str, dict[str, np.ndarray]]
    labels: dict[str, np.ndarray]
    keys: dict[str, str]  # feature source -> a cache key that changes with the model and the data

    def at(self, source: str) -> dict[str, np.ndarray]:
        if source not in self.features:
            raise ValueError(f"features for {source!r} were not prepared (prepared: {sorted(self.features)})")
        return self.features[source]


def extract_layer_features(model: torch.nn.Module, images: np.ndarray, layer: str) -> np.ndarray:
    """One layer's activations for every image, as float32 (N, ..., features)."""
    return layer_output(model, images, layer).float().cpu().numpy()


def network_features(checkpoint: Path, data: TrialData, layers: list[str], data_key: str) -> FeatureData:
    """Each listed layer's activations for train, val and test: one extraction per (checkpoint, layer)."""
    model, description = load_model(checkpoint)
    splits = data.at_size(int(description["image_size"]))
    features = {
        layer: {name: extract_layer_features(model, splits[name].x, layer) for name in SPLITS}
        for layer in layers
    }
    stamp = f"{checkpoint.resolve()}@{(checkpoint / 'model.pt').stat().st_mtime_ns}|{data_key}"
    return FeatureData(
        classes=data.classes,
        features=features,
        labels={name: splits[name].y for name in SPLITS},
        keys={layer: f"{stamp}|{layer}" for layer in layers},
    )

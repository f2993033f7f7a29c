"""What fixes a network's architecture and training, checked without torch.

The sweep's driver validates every configuration with these before Ray starts; importing torch
there would add seconds to every command (benchmarks/run_benchmarks.py, measurement 1).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

ORDINALS = (
    "second third fourth fifth sixth seventh eighth ninth tenth eleventh twelfth thirteenth "
    "fourteenth fifteenth sixteenth seventeenth"
).split()
MIN_HALVED_WIDTH = 4
ACTIVATION_NAMES = ("relu", "gelu", "elu", "tanh", "sigmoid")
INITIALIZER_NAMES = (
    "glorot_normal",
    "glorot_uniform",
    "truncated_normal",
    "random_normal",
    "random_uniform",
    "he_normal",
)
WIDTH_SCHEDULES = ("halve", "constant")
AGGREGATIONS = ("mean", "max", "min", "mean_logits", "vote")
TRAIN_ON = ("image", "patch")
OPTIMIZERS = ("adam", "adamw", "sgd")
LR_SCHEDULES = ("constant", "cosine")
# What a configuration without the key trains at: trials of experiments made before it existed.
UNSET_LR_SCHEDULE = "constant"
SVM_KERNELS = ("rbf", "linear", "poly", "intersection")
SCALINGS = ("standard", "l2", "none")


def hidden_layer_name(index: int) -> str:
    """Name of the index-th hidden layer (0-based): second, third, ..."""
    return ORDINALS[index] if index < len(ORDINALS) else f"hidden{index + 1}"


@dataclass(frozen=True)
class MLPSpec:
    """Everything that fixes an MLP's architecture. Built from a sweep config by `from_config`."""

    input_size: int  # side of the square RGB input the MLP sees (an image or a patch)
    n_classes: int
    depth: int = 1
    width: int = 2048
    width_schedule: str = "halve"
    batch_norm: bool = False
    dropout: float = 0.0
    activation: str = "relu"
    initializer: str = "glorot_normal"

    def __post_init__(self) -> None:
        if self.depth < 0:
            raise ValueError(f"depth must be >= 0, got {self.depth}")
        if self.width < 1:
            raise ValueError(f"width must be >= 1, got {self.width}")
        if self.width_schedule not in WIDTH_SCHEDULES:
            raise ValueError(f"width_schedule must be one of {WIDTH_SCHEDULES}, got {self.width_schedule!r}")
        if self.activation not in ACTIVATION_NAMES:
            raise ValueError(f"activation must be one of {sorted(ACTIVATION_NAMES)}, got {self.activation!r}")
        if self.initializer not in INITIALIZER_NAMES:
            raise ValueError(
                f"initializer must be one of {sorted(INITIALIZER_NAMES)}, got {self.initializer!r}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {self.dropout}")

    @classmethod
    def from_config(cls, config: dict[str, Any], n_classes: int, input_size: int | None = None) -> MLPSpec:
        known = {f.name for f in fields(cls)} - {"input_size", "n_classes"}
        chosen = {k: config[k] for k in known if k in config}
        size = int(input_size if input_size is not None else config["image_size"])
        return cls(input_size=size, n_classes=n_classes, **chosen)

    def hidden_widths(self) -> list[int]:
        if self.width_schedule == "constant":
            return [self.width] * self.depth
        return [max(self.width >> i, MIN_HALVED_WIDTH) for i in range(self.depth)]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class PatchSpec:
    image_size: int
    patch_size: int
    aggregation: str
    mlp: MLPSpec

    def __post_init__(self) -> None:
        if self.patch_size < 1 or self.image_size % self.patch_size:
            raise ValueError(f"patch_size {self.patch_size} does not divide image_size {self.image_size}")
        if self.aggregation not in AGGREGATIONS:
            raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got {self.aggregation!r}")
        if self.mlp.input_size != self.patch_size:
            raise ValueError("the patch MLP's input size must equal patch_size")

    @property
    def patches_per_image(self) -> int:
        return (self.image_size // self.patch_size) ** 2

    @classmethod
    def from_config(cls, config: dict[str, Any], n_classes: int) -> PatchSpec:
        patch_size = int(config["patch_size"])
        return cls(
            image_size=int(config["image_size"]),
            patch_size=patch_size,
            aggregation=config.get("aggregation", "mean"),
            mlp=MLPSpec.from_config(config, n_classes, input_size=patch_size),
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_training_config(config: dict[str, Any]) -> None:
    optimizer = config.get("optimizer", "adam")
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
    schedule = config.get("lr_schedule", UNSET_LR_SCHEDULE)
    if schedule not in LR_SCHEDULES:
        raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {schedule!r}")
    for key in ("lr", "batch_size", "epochs"):
        if key in config and not float(config[key]) > 0:
            raise ValueError(f"{key} must be positive, got {config[key]}")


def check_mlp_config(config: dict[str, Any], n_classes: int, context: dict[str, Any] | None = None) -> None:
    """Raise ValueError for an `mlp` configuration that cannot be built, before any trial starts."""
    MLPSpec.from_config(config, n_classes)
    check_training_config(config)


def check_patch_mlp_config(
    config: dict[str, Any], n_classes: int, context: dict[str, Any] | None = None
) -> None:
    """Raise ValueError for a `patch_mlp` configuration that cannot be built, before any trial starts."""
    PatchSpec.from_config(config, n_classes)
    check_training_config(config)
    train_on = config.get("train_on", "image")
    if train_on not in TRAIN_ON:
        raise ValueError(f"train_on must be one of {TRAIN_ON}, got {train_on!r}")
    if train_on == "image" and config.get("aggregation") == "vote":
        raise ValueError("aggregation 'vote' has no gradient; use it with train_on=patch")


def check_svm_config(config: dict[str, Any]) -> None:
    if config.get("kernel", "rbf") not in SVM_KERNELS:
        raise ValueError(f"kernel must be one of {SVM_KERNELS}, got {config.get('kernel')!r}")
    if not float(config.get("C", 1.0)) > 0:
        raise ValueError(f"C must be positive, got {config.get('C')}")
    gamma = config.get("gamma", "scale")
    if gamma not in ("scale", "auto") and not float(gamma) > 0:
        raise ValueError(f"gamma must be positive, 'scale' or 'auto', got {gamma!r}")
    if not float(config.get("gamma_factor", 1.0)) > 0:
        raise ValueError(f"gamma_factor must be positive, got {config.get('gamma_factor')}")

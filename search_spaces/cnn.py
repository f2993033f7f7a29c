"""A small CNN, the reference that the study's MLPs are measured against: a few conv, batch-norm and
pool blocks, then dense layers. Its defaults, one-factor presets and a joint Optuna space."""

from __future__ import annotations

from typing import Any

from search_spaces.base import Pick, Preset, TaskSpace
from trainables.specs import OPTIMIZERS

IMAGE_SIZES = [16, 32, 64]
BATCH_SIZES = [16, 32, 64, 128]
CONV_WIDTHS = [16, 32, 64]
KERNEL_SIZES = [3, 5, 7]
DENSE_WIDTHS = [128, 256, 512]
MAX_CONV_DEPTH = 4
WEIGHT_DECAYS = [0.0, 1e-5, 1e-4, 1e-3]  # none (the default) or a little

# Three blocks of 3x3 convolutions (32, 64, 128 channels) with batch norm and 2x2 max-pooling on a
# 32x32 image, then one dense layer of 256: a textbook small CNN.
DEFAULTS: dict[str, Any] = {
    "image_size": 32,
    "conv_depth": 3,
    "conv_width": 32,
    "kernel_size": 3,
    "batch_norm": True,
    "depth": 1,
    "width": 256,
    "dropout": 0.0,
    "optimizer": "adam",
    "lr": 1e-3,
    "lr_schedule": "cosine",  # see search_spaces.mlp
    "weight_decay": 0.0,
    "batch_size": 32,
    "epochs": 20,
}


def pools_fit_image(config: dict[str, Any]) -> bool:
    """Each block halves the image, so the last block must still see at least one pixel."""
    return int(config["image_size"]) >> int(config["conv_depth"]) >= 1


PRESETS = {
    preset.name: preset
    for preset in [
        Preset(
            "conv_depth",
            "1 .. 4 conv blocks (each doubles the channels and halves the image)",
            [{"conv_depth": d} for d in range(1, MAX_CONV_DEPTH + 1)],
            keep=pools_fit_image,
        ),
        Preset(
            "conv_width",
            "16, 32 or 64 channels in the first conv block",
            [{"conv_width": w} for w in CONV_WIDTHS],
        ),
        Preset("kernel_size", "3x3, 5x5 or 7x7 convolutions", [{"kernel_size": k} for k in KERNEL_SIZES]),
        Preset(
            "regularization",
            "no regularisation, batch norm, dropout 0.5 before the output, or both",
            [
                {"batch_norm": bn, "dropout": dropout}
                for bn, dropout in ((False, 0.0), (True, 0.0), (False, 0.5), (True, 0.5))
            ],
        ),
    ]
}


def optuna_space(pick: Pick) -> dict[str, Any]:
    image_size = pick.categorical("image_size", IMAGE_SIZES)
    # Blocks are bounded by the image size, so every suggestion builds.
    pick.int("conv_depth", 1, min(MAX_CONV_DEPTH, image_size.bit_length() - 1))
    pick.categorical("conv_width", CONV_WIDTHS)
    pick.categorical("kernel_size", KERNEL_SIZES)
    pick.categorical("batch_norm", [False, True])
    pick.int("depth", 1, 2)
    pick.categorical("width", DENSE_WIDTHS)
    pick.float("lr", 1e-4, 1e-2, log=True)
    pick.categorical("batch_size", BATCH_SIZES)
    pick.categorical("optimizer", OPTIMIZERS)
    pick.categorical("weight_decay", WEIGHT_DECAYS)
    if "dropout" in pick.pinned:
        return {}
    if pick.categorical("use_dropout", [False, True]):
        pick.float("dropout", 0.1, 0.6)
        return {}
    return {"dropout": 0.0}


SPACE = TaskSpace(
    task="cnn",
    description="small CNN (reference): conv, batch-norm and pool blocks -> dense layers -> classes",
    defaults=DEFAULTS,
    optuna_space=optuna_space,
    presets=PRESETS,
    optuna_description="image size, conv depth and width, kernel size, batch norm, dense depth and width, dropout, lr, batch size, optimizer, weight decay",
    optuna_choices={"image_size": IMAGE_SIZES},
)

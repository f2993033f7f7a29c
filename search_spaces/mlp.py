"""Task 1: an MLP on pixels. The study's defaults, its one-factor sweeps, and a joint Optuna space."""

from __future__ import annotations

from typing import Any

from search_spaces.base import Pick, Preset, TaskSpace
from trainables.specs import INITIALIZER_NAMES, OPTIMIZERS, WIDTH_SCHEDULES

IMAGE_SIZES = [8, 16, 32, 64]
BATCH_SIZES = [8, 16, 32, 64, 128, 256, 512]
WIDTHS = [256, 512, 1024, 2048, 4096]
INITIALIZERS = list(INITIALIZER_NAMES)
STUDY_DROPOUT = 0.5

# The study's initial model: 32x32 input, one hidden layer of 2048, Adam 1e-3, batch 16.
DEFAULTS: dict[str, Any] = {
    "image_size": 32,
    "depth": 1,
    "width": 2048,
    "width_schedule": "halve",
    "batch_norm": False,
    "dropout": 0.0,
    "activation": "relu",
    "initializer": "glorot_normal",
    "optimizer": "adam",
    "lr": 1e-3,
    # Not the study's (it trained at a constant rate): annealed, a model's final weights do not
    # depend on which epoch it stopped on (trainables.training.scheduled_lr). The replication keeps
    # the study's constant rate.
    "lr_schedule": "cosine",
    "weight_decay": 0.0,
    "batch_size": 16,
    "epochs": 20,
}

MODEL_1_4 = {"depth": 4, "width": 2048, "width_schedule": "halve"}
MODEL_1_4_4 = {**MODEL_1_4, "batch_norm": True, "dropout": STUDY_DROPOUT}

PRESETS = {
    preset.name: preset
    for preset in [
        Preset("lr", "learning rate 1e-1 .. 1e-6", [{"lr": 10.0**-k} for k in range(1, 7)]),
        Preset("image_size", "input image size 8 .. 128", [{"image_size": s} for s in (8, 16, 32, 64, 128)]),
        Preset(
            "batch_size",
            "batch size 1 .. 512",
            [{"batch_size": b} for b in (1, 8, 16, 32, 64, 128, 256, 512)],
        ),
        Preset(
            "depth",
            "1 .. 8 hidden layers, each half the width of the one before",
            [{"depth": d} for d in range(1, 9)],
        ),
        Preset(
            "regularization",
            "model 1.4 (4 hidden layers) with no regularisation, batch norm, dropout, or both",
            [
                {"batch_norm": bn, "dropout": dropout}
                for bn, dropout in ((False, 0.0), (True, 0.0), (False, STUDY_DROPOUT), (True, STUDY_DROPOUT))
            ],
            base=MODEL_1_4,
        ),
        Preset(
            "width",
            "model 1.4.4 (2048 first), model 2 (4096 first, halving), model 3 (4096, equal widths)",
            [
                {"width": 2048, "width_schedule": "halve"},
                {"width": 4096, "width_schedule": "halve"},
                {"width": 4096, "width_schedule": "constant"},
            ],
            base=MODEL_1_4_4,
        ),
        Preset(
            "initializer",
            "weight initializers GlorotNormal, TruncatedNormal, RandomNormal, RandomUniform",
            [
                {"initializer": name}
                for name in ("glorot_normal", "truncated_normal", "random_normal", "random_uniform")
            ],
        ),
    ]
}


def optuna_space(pick: Pick) -> dict[str, Any]:
    """Everything the study varied one factor at a time, searched jointly."""
    pick.float("lr", 1e-5, 1e-1, log=True)
    pick.categorical("batch_size", BATCH_SIZES)
    pick.categorical("image_size", IMAGE_SIZES)
    pick.int("depth", 1, 8)
    pick.categorical("width", WIDTHS)
    pick.categorical("width_schedule", WIDTH_SCHEDULES)
    pick.categorical("batch_norm", [False, True])
    pick.categorical("initializer", INITIALIZERS)
    pick.categorical("optimizer", OPTIMIZERS)
    if "dropout" in pick.pinned:
        return {}
    # The rate is only a parameter when dropout is on, so TPE does not model a meaningless value.
    if pick.categorical("use_dropout", [False, True]):
        pick.float("dropout", 0.05, 0.6)
        return {}
    return {"dropout": 0.0}


SPACE = TaskSpace(
    task="mlp",
    description="MLP on the image's pixels (flatten -> dense hidden layers -> classes)",
    defaults=DEFAULTS,
    optuna_space=optuna_space,
    presets=PRESETS,
    optuna_description="lr, batch size, image size, depth, width, width schedule, batch norm, dropout, initializer, optimizer",
    optuna_choices={"image_size": IMAGE_SIZES},
    priors=({}, MODEL_1_4),  # the study's initial model, and its best depth (model 1.4)
)

"""Task 3: a patch MLP. The study's defaults (model 1.4 on 32x32 patches of a 64x64 image, mean of the
patch softmax), its patch-size and aggregation tables, and a joint Optuna space."""

from __future__ import annotations

from typing import Any

from search_spaces.base import Pick, Preset, TaskSpace
from search_spaces.mlp import BATCH_SIZES, WIDTHS
from search_spaces.mlp import DEFAULTS as MLP_DEFAULTS
from trainables.specs import OPTIMIZERS

IMAGE_SIZES = [32, 64]
PATCHES_PER_SIDE = [1, 2, 4, 8]
STUDY_PATCH_SIZES = [8, 16, 32, 64]

# The study's model 1.4 (four hidden layers 2048-1024-512-256) on 32x32 patches of a 64x64 image.
DEFAULTS: dict[str, Any] = {
    **MLP_DEFAULTS,
    "image_size": 64,
    "patch_size": 32,
    "aggregation": "mean",
    "train_on": "image",
    "depth": 4,
}


PATCH_TRAINING: dict[str, Any] = {"patch_size": 16, "train_on": "patch", "lr": 1e-4}


def patch_fits_image(config: dict[str, Any]) -> bool:
    return config["patch_size"] <= config["image_size"] and config["image_size"] % config["patch_size"] == 0


PRESETS = {
    preset.name: preset
    for preset in [
        Preset(
            "patch_size",
            "patch size 8, 16, 32, 64 (those that fit the image), mean aggregation",
            [{"patch_size": s} for s in STUDY_PATCH_SIZES],
            keep=patch_fits_image,
        ),
        Preset(
            "aggregation",
            "mean, max or min of the patch softmax (32x32 patches)",
            [{"aggregation": a} for a in ("mean", "max", "min")],
        ),
    ]
}


def optuna_space(pick: Pick) -> dict[str, Any]:
    image_size = pick.categorical("image_size", IMAGE_SIZES)
    constants: dict[str, Any] = {}
    if "patch_size" not in pick.pinned:
        # Searching patches per side keeps every suggestion valid whatever the image size.
        constants["patch_size"] = image_size // pick.categorical("patches_per_side", PATCHES_PER_SIDE)
    train_on = pick.categorical("train_on", ["image", "patch"])
    aggregations = (
        ["mean", "max", "min", "mean_logits", "vote"]
        if train_on == "patch"
        else ["mean", "max", "min", "mean_logits"]
    )
    if "aggregation" not in pick.pinned:
        # `vote` has no gradient, so it is offered only when training on patches.
        constants["aggregation"] = pick.categorical(f"aggregation_{train_on}", aggregations)
    pick.float("lr", 1e-5, 1e-2, log=True)
    pick.categorical("batch_size", BATCH_SIZES)
    pick.int("depth", 1, 5)
    pick.categorical("width", WIDTHS)
    pick.categorical("batch_norm", [False, True])
    pick.categorical("optimizer", OPTIMIZERS)
    return constants


SPACE = TaskSpace(
    task="patch_mlp",
    description="patch MLP: image -> patches -> shared MLP -> per-patch softmax -> aggregation -> class",
    defaults=DEFAULTS,
    optuna_space=optuna_space,
    presets=PRESETS,
    optuna_description="patch size, aggregation, train on image or patch, lr, batch size, depth, width, batch norm, optimizer",
    optuna_choices={"image_size": IMAGE_SIZES},
    # The study's best (model 1.4 on 32x32 patches, mean aggregation), and model 1.4 trained on its
    # patches (each a sample), with 16x16 patches and lr 1e-4: on MIT_split's 64x64 images, 20 epochs,
    # val 0.730 / test 0.720 against the defaults' 0.539 / 0.537 (BENCHMARKS.md, the levers table).
    priors=({}, PATCH_TRAINING),
)

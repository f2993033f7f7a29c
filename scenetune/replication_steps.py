"""The chain of `scenetune replicate`: the study's one-factor experiments in its order, and where each
one starts. Each step is a preset sweep; its pins come from the best configurations of the steps
before it, wherever the study carried its choice forward. Where the study fixed a choice by hand
(batch norm + dropout for the wider models, model 2 for the initializers and the SVM, model 1.4 for
the patches) the chain follows the study (`--carry study`), or takes the best value found instead
(`--carry best`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from search_spaces.mlp import MODEL_1_4, STUDY_DROPOUT

STATE_FILE = "replication-state.json"  # in a replication's folder: its request and which steps are done
CARRY_MODES = ("study", "best")
PROTOCOLS = ("study", "honest")

# The study trained its networks at a constant learning rate; the tasks' defaults anneal it.
STUDY_LR_SCHEDULE = {"lr_schedule": "constant"}

# What an MLP step hands on: how it trained, and its architecture.
TRAINING_KEYS = ("lr", "batch_size")
ARCHITECTURE_KEYS = ("depth", "width", "width_schedule", "batch_norm", "dropout", "initializer")
MODEL_2 = {"width": 4096, "width_schedule": "halve", "batch_norm": True, "dropout": STUDY_DROPOUT}

# Chosen: step name -> that step's best configuration (chosen on validation accuracy).
Chosen = dict[str, dict[str, Any]]


def _kept(config: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    return {key: config[key] for key in keys if key in config}


@dataclass(frozen=True)
class ReplicationStep:
    name: str  # the step's experiment folder, and its name in the published table file
    task: str
    preset: str
    study_start: str  # where the study started this step (documented in replication.md)
    best_start: str  # where `--carry best` starts it
    pins: Callable[[Chosen, str], dict[str, Any]]  # (chosen so far, carry mode) -> the step's pins
    # For feature steps: which earlier steps' networks it may take its features from, by carry mode.
    source_steps: Callable[[str], tuple[str, ...]] | None = None
    source_match: Callable[[str], dict[str, Any]] | None = None  # the study's hand-picked network


def _mlp_so_far(chosen: Chosen, *steps: str) -> dict[str, Any]:
    """lr from the lr step, image size from the image-size step, and so on: each earlier step's factor."""
    factors = {
        "lr": ("lr",),
        "image_size": ("image_size",),
        "batch_size": ("batch_size",),
        "depth": ("depth",),
    }
    pins: dict[str, Any] = {}
    for step in steps:
        pins.update(_kept(chosen[step], factors[step]))
    return pins


def _width_pins(chosen: Chosen, carry: str) -> dict[str, Any]:
    pins = _mlp_so_far(chosen, "lr", "image_size", "batch_size", "depth")
    if carry == "best":  # the study went on with batch norm + dropout although model 1.4 scored higher
        pins.update(_kept(chosen["regularization"], ("batch_norm", "dropout")))
    return pins


def _initializer_pins(chosen: Chosen, carry: str) -> dict[str, Any]:
    pins = _mlp_so_far(chosen, "lr", "image_size", "batch_size", "depth")
    if carry == "best":
        return {**pins, **_kept(chosen["width"], ("width", "width_schedule", "batch_norm", "dropout"))}
    return {**pins, **MODEL_2}


def _patch_pins(chosen: Chosen, carry: str) -> dict[str, Any]:
    """Model 1.4 (the best depth, 2048 halving, no regularisation) trained as the MLP steps found best."""
    training = _kept(chosen["batch_size"], TRAINING_KEYS)
    if carry == "best":
        best_mlp = chosen["best_mlp"]
        return {**_kept(best_mlp, TRAINING_KEYS), **_kept(best_mlp, ARCHITECTURE_KEYS)}
    return {
        **training,
        **MODEL_1_4,
        **_kept(chosen["depth"], ("depth",)),
        "batch_norm": False,
        "dropout": 0.0,
    }


MLP_STEPS = ("lr", "image_size", "batch_size", "depth", "regularization", "width", "initializer")
PATCH_STEPS = ("patch_size", "aggregation")

STEPS = (
    ReplicationStep(
        "lr", "mlp", "lr", "the initial model (the task's defaults)", "the same", lambda chosen, carry: {}
    ),
    ReplicationStep(
        "image_size",
        "mlp",
        "image_size",
        "the best lr",
        "the same",
        lambda chosen, carry: _mlp_so_far(chosen, "lr"),
    ),
    ReplicationStep(
        "batch_size",
        "mlp",
        "batch_size",
        "the best lr and image size",
        "the same",
        lambda chosen, carry: _mlp_so_far(chosen, "lr", "image_size"),
    ),
    ReplicationStep(
        "depth",
        "mlp",
        "depth",
        "the best lr, image size and batch size",
        "the same",
        lambda chosen, carry: _mlp_so_far(chosen, "lr", "image_size", "batch_size"),
    ),
    ReplicationStep(
        "regularization",
        "mlp",
        "regularization",
        "model 1.4: the best depth, 2048 halving",
        "the same",
        lambda chosen, carry: _mlp_so_far(chosen, "lr", "image_size", "batch_size", "depth"),
    ),
    ReplicationStep(
        "width",
        "mlp",
        "width",
        "model 1.4 with batch norm and dropout (model 1.4.4), as the study chose by hand",
        "model 1.4 with the best regularisation",
        _width_pins,
    ),
    ReplicationStep(
        "initializer",
        "mlp",
        "initializer",
        "model 2 (4096 first, halving, batch norm and dropout), as the study chose by hand",
        "the best model of the width step",
        _initializer_pins,
    ),
    ReplicationStep(
        "feature_svm",
        "feature_svm",
        "layer",
        "model 2's network from the width step, as the study chose by hand",
        "the best network of all MLP steps",
        lambda chosen, carry: {"kernel": "rbf"},
        source_steps=lambda carry: ("width",) if carry == "study" else MLP_STEPS,
        source_match=lambda carry: _kept(MODEL_2, ("width", "width_schedule")) if carry == "study" else {},
    ),
    ReplicationStep(
        "patch_size",
        "patch_mlp",
        "patch_size",
        "model 1.4 (the best depth, no regularisation), as the study chose by hand; mean aggregation",
        "the best MLP of all MLP steps; mean aggregation",
        _patch_pins,
    ),
    ReplicationStep(
        "aggregation",
        "patch_mlp",
        "aggregation",
        "the patch model at the best patch size",
        "the same",
        lambda chosen, carry: {
            **_kept(chosen["patch_size"], (*TRAINING_KEYS, *ARCHITECTURE_KEYS)),
            "patch_size": chosen["patch_size"]["patch_size"],
        },
    ),
    ReplicationStep(
        "codebook",
        "bovw",
        "codebook",
        "the last hidden layer of the best patch model (both patch steps)",
        "the same",
        lambda chosen, carry: {"descriptor": "learnt", "layer": "last"},
        source_steps=lambda carry: PATCH_STEPS,
        source_match=lambda carry: {},
    ),
)

# --quick: small networks and inputs wherever the step does not vary them, two epochs per trial.
QUICK_PINS = {"mlp": {"image_size": 16, "width": 64}, "patch_mlp": {"width": 64}}
QUICK_EPOCHS = 2


def step_named(name: str) -> ReplicationStep:
    return next(step for step in STEPS if step.name == name)

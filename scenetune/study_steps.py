"""The steps of `scenetune study`: which task each runs, as which approach, from which earlier step,
with which share of the budget. The runner runs them; `analysis.study` compares them by approach."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

MLP = "end-to-end MLP"
FEATURE_SVM = "deep features + SVM"
PATCH_MLP = "patch MLP"
BOVW_LEARNT = "BoVW, learnt descriptors"
BOVW_SIFT = "BoVW, dense SIFT (handcrafted)"
CNN_REFERENCE = "small CNN (reference)"


@dataclass(frozen=True)
class StudyStep:
    name: str
    task: str
    approach: str
    budget_share: float
    source_step: str | None = None
    pins: dict[str, Any] = field(default_factory=dict)
    quick_samples: int = 4
    quick_epochs: int | None = None
    quick_pins: dict[str, Any] = field(default_factory=dict)


STEPS = (
    StudyStep(
        "mlp",
        "mlp",
        MLP,
        0.25,
        quick_samples=6,
        quick_epochs=3,
        quick_pins={"image_size": 16, "width_schedule": "halve"},
    ),
    StudyStep("feature_svm", "feature_svm", FEATURE_SVM, 0.10, source_step="mlp", quick_samples=6),
    StudyStep(
        "patch_mlp",
        "patch_mlp",
        PATCH_MLP,
        0.30,
        quick_samples=4,
        quick_epochs=3,
        quick_pins={"image_size": 32, "width": 256},
    ),
    StudyStep(
        "bovw_learnt",
        "bovw",
        BOVW_LEARNT,
        0.10,
        source_step="patch_mlp",
        pins={"descriptor": "learnt"},
        quick_pins={"codebook_size": 64},
    ),
    StudyStep(
        "bovw_sift",
        "bovw",
        BOVW_SIFT,
        0.15,
        pins={"descriptor": "sift"},
        quick_pins={"image_size": 32, "codebook_size": 64},
    ),
    # Not part of the study: a small CNN, to show where its networks stand against a standard model.
    StudyStep(
        "cnn",
        "cnn",
        CNN_REFERENCE,
        0.10,
        quick_samples=4,
        quick_epochs=3,
        quick_pins={"image_size": 16, "conv_width": 16},
    ),
)

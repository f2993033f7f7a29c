"""Each test image's predicted and true class, saved with a trial's checkpoint: what intervals over
test images and paired comparisons of approaches are computed from (analysis.uncertainty)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from scenetune.experiment import TEST_PREDICTIONS_FILE
from trainables.staging import checkpoint_staging


def save_test_predictions(directory: Path, predicted: np.ndarray, labels: np.ndarray) -> None:
    np.savez(
        Path(directory) / TEST_PREDICTIONS_FILE, predicted=np.asarray(predicted), labels=np.asarray(labels)
    )


def report_with_test_predictions(metrics: dict[str, Any], predicted: np.ndarray, labels: np.ndarray) -> None:
    """tune.report for a trial with no network to keep (an SVM): its checkpoint holds the predictions."""
    from ray import tune

    with checkpoint_staging() as staging:
        save_test_predictions(staging, predicted, labels)
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(staging))

"""Mend what a killed sweep can leave behind, before Ray resumes it.

Ray deletes a trial's previous checkpoint as soon as a newer one is on disk, but writes that change
into the experiment state only when it next saves it. A sweep killed in between resumes a trial
whose recorded checkpoint no longer exists, and Ray fails that trial. The newer checkpoint is the
trial's real state, so it takes the name the record expects.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from scenetune.experiment import CHECKPOINT_PREFIX, ray_trial_entries


@dataclass(frozen=True)
class RecordedCheckpoint:
    trial_id: str
    path: Path  # where the checkpoint lies inside this experiment folder (it may have moved since)


def recorded_checkpoints(experiment_dir: Path) -> list[RecordedCheckpoint]:
    """Each trial's latest checkpoint as Ray's newest saved experiment state names it."""
    from ray.tune.utils.serialization import TuneFunctionDecoder

    recorded = []
    try:
        for trial_json, metadata_json in ray_trial_entries(experiment_dir):
            # The state is this experiment's own file, written by Ray for this experiment: safe to unpickle.
            metadata = json.loads(metadata_json, cls=TuneFunctionDecoder, allow_cloudpickle=True)
            latest = metadata["checkpoint_manager"].latest_checkpoint_result
            if latest is None or latest.checkpoint is None:
                continue
            saved_at = Path(latest.checkpoint.path)
            recorded.append(
                RecordedCheckpoint(
                    json.loads(trial_json)["trial_id"],
                    Path(experiment_dir) / saved_at.parent.name / saved_at.name,
                )
            )
    except (ValueError, KeyError, TypeError, AttributeError):
        return []  # a state this code cannot read is left to Ray's restore, which says what is wrong
    return recorded


def _newer_checkpoints(recorded: Path) -> list[Path]:
    if not recorded.parent.is_dir():
        return []
    return sorted(
        p
        for p in recorded.parent.iterdir()
        if p.is_dir() and p.name.startswith(CHECKPOINT_PREFIX) and p.name > recorded.name
    )


def restore_superseded_checkpoints(experiment_dir: Path) -> list[str]:
    """Move each trial's newest checkpoint to its recorded name where the recorded one is gone.

    Returns one line per mended trial. A trial with no newer checkpoint is left to Ray, which
    reports it as failed.
    """
    mended = []
    for checkpoint in recorded_checkpoints(experiment_dir):
        if checkpoint.path.exists():
            continue
        newer = _newer_checkpoints(checkpoint.path)
        if not newer:
            continue
        newer[-1].rename(checkpoint.path)
        mended.append(
            f"trial {checkpoint.trial_id} continues from {newer[-1].name}, saved after Ray last recorded the experiment"
        )
    return mended

"""Mend what a killed sweep can leave behind, before Ray resumes it; refuse a resume Ray cannot do.

Ray saves the experiment's state in a staging folder of its session and copies it into the experiment
folder; a kill during that copy leaves the folder's newest state file cut short, and Ray's complete
copy stays behind in the staging folder.

Ray deletes a trial's previous checkpoint as soon as a newer one is on disk, but writes that change
into the experiment state only when it next saves it. A sweep killed in between resumes a trial
whose recorded checkpoint no longer exists, and Ray fails that trial. The newer checkpoint is the
trial's real state, so it takes the name the record expects.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from scenetune import atomic
from scenetune.errors import UserError
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


# The files a resume reads back, newest session first, and whether each is JSON (the search generator's
# state is a pickle despite its name). A kill while Ray copies them from its driver staging folder into
# the experiment folder leaves the copy cut short.
RESTORED_STATE_FILES = (
    ("experiment_state-*.json", "json"),
    ("search_gen_state-*.json", "pickle"),
    ("searcher-state-*.pkl", "pickle"),
)


def mend_cut_state_files(experiment_dir: Path) -> list[str]:
    """Replace each newest saved state file that a kill cut short with Ray's complete copy, where this
    machine still has it (in the driver staging folder of the killed run's Ray session).

    Returns one line per mended file. A file without a complete copy is left to Ray's restore, which
    the resume then refuses (`refusing_a_fresh_start`).
    """
    mended = []
    for pattern, encoding in RESTORED_STATE_FILES:
        saved = sorted(Path(experiment_dir).glob(pattern))
        if not saved or _readable(saved[-1], encoding):
            continue
        copy = _complete_staged_copy(Path(experiment_dir).name, saved[-1].name, encoding)
        if copy is None:
            continue
        with atomic.replaced_when_written(saved[-1]) as partial:
            shutil.copyfile(copy, partial)
        mended.append(
            f"{saved[-1].name} was cut short by the kill; restored Ray's complete copy from {copy.parent}"
        )
    return mended


def _readable(state_file: Path, encoding: str) -> bool:
    """Whether a saved state file reads whole (this experiment's own file, written by Ray: safe to unpickle)."""
    import ray.cloudpickle

    try:
        if encoding == "json":
            json.loads(state_file.read_text())
        else:
            ray.cloudpickle.loads(state_file.read_bytes())
    except Exception:  # whatever a cut file raises: EOFError, UnpicklingError, JSONDecodeError, ...
        return False
    return True


def _complete_staged_copy(experiment_name: str, file_name: str, encoding: str) -> Path | None:
    """The newest readable copy of `file_name` in a driver staging folder of this machine's Ray sessions."""
    from ray.train.constants import _get_ray_train_session_dir

    sessions = Path(_get_ray_train_session_dir()).parent.parent  # <ray temp>/session_*/artifacts
    copies = sessions.glob(f"session_*/artifacts/*/{experiment_name}/driver_artifacts/{file_name}")
    readable = [copy for copy in copies if _readable(copy, encoding)]
    return max(readable, key=lambda copy: copy.stat().st_mtime) if readable else None


def mend_for_resume(experiment_dir: Path) -> list[str]:
    """What a kill can leave behind, mended before Ray resumes: cut state files, superseded checkpoints."""
    return mend_cut_state_files(experiment_dir) + restore_superseded_checkpoints(experiment_dir)


# What Ray's TuneController logs when it cannot restore an experiment's saved state. It then starts the
# experiment afresh in the same folder: new trials beside the old ones, the finished ones forgotten.
_RESTORE_FAILED = "Failed to restore the run state"
_TUNE_CONTROLLER_LOGGER = "ray.tune.execution.tune_controller"


class _RefuseFreshStart(logging.Filter):
    """Turns Ray's 'failed to restore' record into an error; passes the logger's other records as before."""

    def __init__(self, experiment: str, shown_from_level: int) -> None:
        super().__init__()
        self.experiment = experiment
        self.shown_from_level = shown_from_level

    def filter(self, record: logging.LogRecord) -> bool:
        if record.getMessage().startswith(_RESTORE_FAILED):
            cause = record.exc_info[1] if record.exc_info else None
            reason = f"{type(cause).__name__}: {cause}" if cause is not None else "no reason given"
            raise UserError(
                f"cannot resume {self.experiment}: Ray could not restore its saved state ({reason}); "
                "nothing was run and nothing saved was changed"
            )
        return record.levelno >= self.shown_from_level


@contextlib.contextmanager
def refusing_a_fresh_start(experiment: str) -> Iterator[None]:
    """While a restored Tuner runs: a saved state Ray cannot restore stops the resume with an error,
    where Ray would log it and run the experiment again from its first trial."""
    logger = logging.getLogger(_TUNE_CONTROLLER_LOGGER)
    level = logger.level
    guard = _RefuseFreshStart(experiment, shown_from_level=logger.getEffectiveLevel())
    # The record must be created to be seen: the logger may be quieter than ERROR (a quiet sweep).
    logger.setLevel(min(logger.getEffectiveLevel(), logging.ERROR))
    logger.addFilter(guard)
    try:
        yield
    finally:
        logger.removeFilter(guard)
        logger.setLevel(level)

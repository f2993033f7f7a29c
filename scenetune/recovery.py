"""Mend what a killed sweep can leave behind, before Ray resumes it; refuse a resume Ray cannot do.

Ray saves the experiment's state in a staging folder of its session and copies it into the experiment
folder; a kill during that copy leaves the folder's newest state file cut short. Ray's complete copy
may stay behind in the staging folder; Ray writes that one in place, though, so a kill can cut it too,
and the driver's own copy of the last whole save (`kept_save`) is the fallback.

The same copy carries each trial's result.json and progress.csv from the staging folder, so a kill
during it can leave an ended trial's reports cut short (seen: an ended trial's result.json empty, its
20 epochs whole in the staging folder). Ray never copies an ended trial's files again, so the
resume takes them back from the staged copy that continues them.

Ray deletes a trial's previous checkpoint as soon as a newer one is on disk, but writes that change
into the experiment state only when it next saves it. A sweep killed in between resumes a trial
whose recorded checkpoint no longer exists, and Ray fails that trial. The newer checkpoint is the
trial's real state, so it takes the name the record expects. A trial's worker outlives a killed
driver for a moment and can save further checkpoints that nothing recorded.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scenetune import atomic
from scenetune.errors import UserError
from scenetune.experiment import (
    CHECKPOINT_PREFIX,
    EXPERIMENT_STATE_PREFIX,
    KEPT_SAVE_FILE,
    RESULT_FILE,
    newest_experiment_state,
    ray_trial_entries,
    saved_state_files,
    session_of,
)
from scenetune.kept_save import unpack_kept_save


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
    """Give each trial the checkpoint that follows its recorded one where the recorded one is gone,
    and remove the checkpoints saved after that.

    The checkpoint next to the record is taken rather than the newest: the reports of the epochs after
    the record may be lost with the driver, and the trial reports again only the epochs its checkpoint
    holds (`trainables.training`). The later ones would collide with the checkpoints the continued
    trial saves. Returns one line per mended trial. A trial with no newer checkpoint is left to Ray,
    which reports it as failed.
    """
    mended = []
    for checkpoint in recorded_checkpoints(experiment_dir):
        newer = _newer_checkpoints(checkpoint.path)
        continued = newer.pop(0) if newer and not checkpoint.path.exists() else None
        if continued is not None:
            continued.rename(checkpoint.path)
        for later in newer:
            shutil.rmtree(later)
        if continued is not None:
            removed = (
                f" ({len(newer)} later checkpoint(s) removed: it trains those epochs again)" if newer else ""
            )
            mended.append(
                f"trial {checkpoint.trial_id} continues from {continued.name}, saved after Ray last recorded "
                f"the experiment{removed}"
            )
        elif newer:
            mended.append(
                f"trial {checkpoint.trial_id}: {len(newer)} checkpoint(s) saved after Ray last recorded the "
                "experiment removed: it trains those epochs again from its recorded checkpoint"
            )
    return mended


def mend_state_a_kill_left(experiment_dir: Path) -> list[str]:
    """Where a kill cut one of the newest saved state files short, or split Ray's copy of them so that
    the search and the experiment state disagree on which trials exist or still run, put back that
    session's last whole save: Ray's own from its driver staging folder on this machine, or else the
    copy the driver kept in the experiment folder (`kept_save`).

    Returns one line, or none. A cut save without a whole copy is left to Ray's restore, which the
    resume then refuses (`refusing_a_fresh_start`); a split one is refused here.
    """
    experiment_dir = Path(experiment_dir)
    newest = newest_experiment_state(experiment_dir)
    if newest is None:
        return []
    session = session_of(newest)
    saved = saved_state_files(experiment_dir, session)
    contents = _read_saved(saved)
    cut = sorted(name for name, content in contents.items() if content is _CUT_SHORT)
    split = "" if cut else _split_between(contents, session)
    if not cut and not split:
        return []
    with tempfile.TemporaryDirectory(prefix="scenetune-kept-save-") as unpacked:
        found = _whole_save(experiment_dir, session, set(saved), Path(unpacked))
        if found is None:
            if split:
                raise UserError(
                    f"cannot resume {experiment_dir}: the kill split Ray's copy of its state ({split}) and no "
                    "complete copy is left; nothing was run and nothing saved was changed"
                )
            return []
        source, whole = found
        for name, copy in whole.items():
            with atomic.replaced_when_written(experiment_dir / name) as partial:
                shutil.copyfile(copy, partial)
    what = (
        f"{', '.join(cut)} cut short by the kill"
        if cut
        else f"the kill split Ray's copy of its state ({split})"
    )
    return [f"{what}; put back {source}"]


def _whole_save(
    experiment_dir: Path, session: str, needed: set[str], unpack_into: Path
) -> tuple[str, dict[str, Path]] | None:
    """Where the last whole save of `session` is, in words, and its files: Ray's staged copy where one
    is whole (the kept copy is never newer), or else the copy the driver kept."""
    staged = _complete_staged_save(experiment_dir, session, needed)
    if staged is not None:
        return f"Ray's complete save of {session} from {next(iter(staged.values())).parent}", staged
    kept = unpack_kept_save(experiment_dir, session, unpack_into)
    if kept and _whole(_read_saved(kept), session, needed):
        return f"the last whole save of {session}, which the sweep kept in {KEPT_SAVE_FILE}", kept
    return None


def _whole(contents: dict[str, Any], session: str, needed: set[str]) -> bool:
    """Whether a save (its files decoded) holds every file in `needed`, each reads whole, and they agree
    with each other."""
    return (
        needed <= set(contents)
        and _CUT_SHORT not in contents.values()
        and not _split_between(contents, session)
    )


def _split_between(contents: dict[str, Any], session: str) -> str:
    """How the saved search and the saved experiment state, copied at different moments, disagree;
    empty when they agree.

    - The search waits for a trial the experiment state holds as ended or not at all: the resume
      never runs it, and Ray waits for it for ever.
    - The experiment state holds a trial the search never made: the resume runs it beside the
      search's own, so more trials than asked, one of them outside the concurrency limit and unknown
      to the search.

    (A trial the experiment state holds as running and the search as ended is no sign of a split:
    so stands every errored trial a resume runs again.)
    """
    generator = contents.get(f"search_gen_state-{session}.json")
    state = contents.get(f"{EXPERIMENT_STATE_PREFIX}{session}.json")
    if generator is None or state is None:  # a refit's grid keeps no such state
        return ""
    statuses = _trial_statuses(state)
    if "counter" in generator and generator["counter"] < len(statuses):
        return f"the experiment state holds {len(statuses)} trials, the search made {generator['counter']}"
    if "name:ConcurrencyLimiter" not in generator:
        return ""
    live = set(generator["name:ConcurrencyLimiter"]["live_trials"])
    resumed = {trial for trial, status in statuses.items() if status != "TERMINATED"}  # errored ones too
    waited_for = live - resumed
    return f"the search waits for trial {', '.join(sorted(waited_for))}" if waited_for else ""


def _trial_statuses(experiment_state: dict[str, Any]) -> dict[str, str]:
    entries = (json.loads(trial) for trial, _ in experiment_state.get("trial_data", []))
    return {entry["trial_id"]: entry.get("status", "") for entry in entries}


_CUT_SHORT = object()  # what a saved state file that does not read whole reads as


def _read_saved(save: dict[str, Path]) -> dict[str, Any]:
    """Each file of a save decoded, or _CUT_SHORT where it does not read whole; read once, since the
    search's pickle can hold every trial Optuna has seen. Ray writes JSON, and pickles under both .pkl
    and .json names (this experiment's own files, written by Ray: safe to unpickle)."""
    import ray.cloudpickle

    contents: dict[str, Any] = {}
    for name, state_file in save.items():
        data = state_file.read_bytes()
        try:
            contents[name] = json.loads(data)
        except ValueError:
            try:
                contents[name] = ray.cloudpickle.loads(data)
            except Exception:  # whatever a cut pickle raises: EOFError, UnpicklingError, ...
                contents[name] = _CUT_SHORT
    return contents


def _complete_staged_save(experiment_dir: Path, session: str, needed: set[str]) -> dict[str, Path] | None:
    """The newest save of `session` in a driver staging folder of this machine's Ray sessions that is
    this experiment's (its trials have folders here), holds every file in `needed`, reads whole and
    is not split."""
    trial_folders = {folder.name.rsplit("_", 1)[-1] for folder in experiment_dir.iterdir() if folder.is_dir()}
    complete = []
    for staging in _staging_folders(experiment_dir):
        state = staging / f"{EXPERIMENT_STATE_PREFIX}{session}.json"
        if not state.is_file():
            continue
        save = saved_state_files(staging, session)
        contents = _read_saved(save)
        # Another experiment of that name may have started the same second: its trials are not here.
        if _whole(contents, session, needed) and _trial_statuses(contents[state.name]).keys() & trial_folders:
            complete.append(save)
    if not complete:
        return None
    return max(complete, key=lambda save: save[f"{EXPERIMENT_STATE_PREFIX}{session}.json"].stat().st_mtime)


def _staging_folders(experiment_dir: Path) -> list[Path]:
    """The driver staging folders of this machine's Ray sessions for an experiment of this name."""
    from ray.train.constants import _get_ray_train_session_dir

    sessions = Path(_get_ray_train_session_dir()).parent.parent  # <ray temp>/session_*/artifacts
    return list(sessions.glob(f"session_*/artifacts/*/{experiment_dir.name}/driver_artifacts"))


# What Ray's logger callbacks write per trial in the staging folder, and copy with the saved state.
TRIAL_REPORT_FILES = (RESULT_FILE, "progress.csv")


def restore_trial_reports_a_kill_cut(experiment_dir: Path) -> list[str]:
    """Put back each trial report file that a kill cut short while Ray copied it: the longest staged
    copy that begins with the experiment's copy and goes further. One line, or none."""
    experiment_dir = Path(experiment_dir)
    staging = _staging_folders(experiment_dir)
    restored = []
    for trial in sorted(folder for folder in experiment_dir.iterdir() if folder.is_dir()):
        for name in TRIAL_REPORT_FILES:
            here = trial / name
            size = here.stat().st_size if here.is_file() else 0
            longer = [
                copy
                for copy in (folder / trial.name / name for folder in staging)
                if copy.is_file() and copy.stat().st_size > size
            ]
            if not longer:  # as after every clean save: nothing of this file is read
                continue
            current = here.read_bytes() if size else b""
            continuing = [copy for copy in longer if copy.read_bytes().startswith(current)]
            if not continuing:
                continue
            with atomic.replaced_when_written(here) as partial:
                shutil.copyfile(max(continuing, key=lambda copy: copy.stat().st_size), partial)
            restored.append(f"{trial.name}/{name}")
    if not restored:
        return []
    return [f"{', '.join(restored)} cut short by the kill; put back Ray's staged copy"]


def mend_for_resume(experiment_dir: Path) -> list[str]:
    """What a kill can leave behind, mended before Ray resumes: cut state files, cut trial reports,
    superseded checkpoints."""
    return (
        mend_state_a_kill_left(experiment_dir)
        + restore_trial_reports_a_kill_cut(experiment_dir)
        + restore_superseded_checkpoints(experiment_dir)
    )


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

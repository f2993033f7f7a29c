"""scenetune's own copy of Ray's last whole save of an experiment's state, for a resume to fall back on.

Ray writes its saved state in place in a staging folder of its session and copies that folder into
the experiment folder in the background, without waiting for the previous copy to finish. A kill can
therefore cut both the experiment folder's copy and the staging one, and a reboot clears the staging
folder. After every save the driver packs the whole save into one file of the experiment folder,
replaced at once, so a resume always finds the last save that was whole (`recovery` reads it).
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

from ray import tune

from scenetune import atomic
from scenetune.experiment import (
    EXPERIMENT_STATE_PREFIX,
    KEPT_SAVE_FILE,
    newest_experiment_state,
    saved_state_files,
    session_of,
)


def keep_save(staging: Path, experiment_dir: Path) -> None:
    """Pack the newest save in Ray's staging folder into the experiment folder's kept save."""
    state = newest_experiment_state(staging)
    if state is None:
        return
    with atomic.replaced_when_written(experiment_dir / KEPT_SAVE_FILE) as partial:
        with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED) as kept:
            for name, path in sorted(saved_state_files(staging, session_of(state)).items()):
                kept.write(path, arcname=name)


def unpack_kept_save(experiment_dir: Path, session: str, into: Path) -> dict[str, Path]:
    """The kept save's files, unpacked into `into`, if it is a save of `session`; else none."""
    kept = experiment_dir / KEPT_SAVE_FILE
    if not kept.is_file():
        return {}
    try:
        with zipfile.ZipFile(kept) as archive:
            if f"{EXPERIMENT_STATE_PREFIX}{session}.json" not in archive.namelist():
                return {}
            archive.extractall(into)
    except zipfile.BadZipFile:  # written whole or not at all, but a disk can still fail
        return {}
    return saved_state_files(into, session)


class KeepWholeSave(tune.Callback):
    """After each save of the experiment's state, keeps a copy of it in the experiment folder.

    Ray saves on the driver's loop, the thread that calls this callback, so the staging folder holds a
    whole save whenever a step ends; its background copy into the experiment folder may still be
    running, which is why this copy is taken from the staging folder."""

    def __init__(self) -> None:
        self.kept_mtime_ns: int | None = None  # of the staged experiment state last kept

    def on_step_end(self, iteration: int, trials: list[Any], **info: Any) -> None:
        self._keep_if_saved_again(trials)

    def on_experiment_end(self, trials: list[Any], **info: Any) -> None:
        self._keep_if_saved_again(trials)  # Tune saves the final state before it ends the experiment

    def _keep_if_saved_again(self, trials: list[Any]) -> None:
        import pyarrow.fs

        if not trials or not isinstance(trials[0].storage.storage_filesystem, pyarrow.fs.LocalFileSystem):
            return  # a resume mends only an experiment on this machine's disk
        storage = trials[0].storage
        staging = Path(storage.experiment_driver_staging_path)
        state = newest_experiment_state(staging)
        if state is None:
            return
        mtime_ns = state.stat().st_mtime_ns
        if mtime_ns != self.kept_mtime_ns:
            keep_save(staging, Path(storage.experiment_fs_path))
            self.kept_mtime_ns = mtime_ns

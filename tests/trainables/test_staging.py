"""A checkpoint's staging folder in the temporary disk: a trial killed while it reports cannot remove
its own, so the next trial on that machine does."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from scenetune.cli import main
from scenetune.experiment import load_trials
from trainables.staging import STAGING_PREFIX, checkpoint_staging, remove_orphaned_staging


def _ended_process_id() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def _staging_folder(parent: Path, owner: int) -> Path:
    folder = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{owner}-", dir=parent))
    (folder / "model.pt").write_bytes(b"\0" * 1024)  # a checkpoint half written when the kill came
    return folder


def test_only_the_folders_of_ended_processes_are_removed(tmp_path: Path) -> None:
    orphaned = _staging_folder(tmp_path, _ended_process_id())
    running = _staging_folder(tmp_path, os.getpid())
    other = tmp_path / "scenetune-checkpoint-0maub2a4"  # an earlier version's name: its owner is unknown
    other.mkdir()
    assert remove_orphaned_staging(tmp_path) == [orphaned]
    assert not orphaned.exists() and running.is_dir() and other.is_dir()


def test_a_staging_folder_is_named_after_its_process_and_removed_after_the_report() -> None:
    with checkpoint_staging() as staging:
        assert staging.name.startswith(f"{STAGING_PREFIX}{os.getpid()}-") and staging.is_dir()
    assert not staging.exists()


@pytest.mark.integration
def test_a_trial_removes_what_a_trial_killed_while_reporting_left(tmp_path: Path, ray_session) -> None:
    orphaned = _staging_folder(Path(tempfile.gettempdir()), _ended_process_id())
    tiny = ["--samples", "1", "--epochs", "1", "--set", "image_size=8", "--set", "width=32"]
    assert main(["sweep", "mlp", *tiny, "--storage", str(tmp_path), "--name", "s"]) == 0
    (trial,) = load_trials(tmp_path / "s")
    assert trial.checkpoints()  # the trial's own checkpoint went through its staging folder
    assert not orphaned.exists()

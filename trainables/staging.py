"""Where a trial writes a checkpoint before Ray copies it into the experiment.

A temporary folder, named after the worker process that writes it. A trial killed while it reports
(Ctrl-C, `kill -9`, a node going down) cannot remove its own folder, and a large network's weights
and optimizer state can take gigabytes of the temporary disk; so each trial first removes the
folders of processes that no longer run on its machine.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil

STAGING_PREFIX = "scenetune-staging-"


@contextmanager
def checkpoint_staging() -> Iterator[Path]:
    """An empty folder for one checkpoint, removed when the report is done."""
    with tempfile.TemporaryDirectory(prefix=f"{STAGING_PREFIX}{os.getpid()}-") as staging:
        yield Path(staging)


def remove_orphaned_staging(temp_dir: Path | None = None) -> list[Path]:
    """Remove the staging folders whose process has ended; returns them. A folder whose process id
    was reused by another process stays until that one ends too."""
    removed = []
    for folder in Path(temp_dir or tempfile.gettempdir()).glob(f"{STAGING_PREFIX}*-*"):
        owner = folder.name.removeprefix(STAGING_PREFIX).split("-", 1)[0]
        if owner.isdigit() and not psutil.pid_exists(int(owner)):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed

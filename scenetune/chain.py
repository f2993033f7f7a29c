"""What the commands that run a chain of sweeps (`study`, `replicate`) share: one folder per chain,
claimed atomically, and a state file that records which steps are done, so `--resume` continues."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from scenetune import atomic
from scenetune.errors import UserError
from scenetune.heartbeat import refuse_if_running


def check_directory(directory: Path, resume: bool, name: str | None, state_file: str, what: str) -> None:
    """A resumed chain must exist with its state file; a new one must not exist yet."""
    if resume:
        if not name:
            raise UserError(f"--resume needs --name, the name of the {what} to continue")
        if not (directory / state_file).is_file():
            raise UserError(f"cannot resume: {directory} is not a scenetune {what} (no {state_file})")
        refuse_if_running(directory, what)
    elif directory.exists():
        raise UserError(
            f"{what} directory {directory} already exists; pass --resume to continue it or choose another --name"
        )


def claim_directory(directory: Path, what: str) -> None:
    """Create the chain's folder; of two chains started at once with one --name, one goes on."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    try:
        directory.mkdir()
    except FileExistsError:
        raise UserError(
            f"{what} directory {directory} already exists (another {what} created it just now); choose another --name"
        ) from None


def read_state(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def write_state(path: Path, state: dict[str, Any]) -> None:
    """Atomically: a kill while writing leaves the previous state, never half of one."""
    atomic.write_text(path, json.dumps(state, indent=2))

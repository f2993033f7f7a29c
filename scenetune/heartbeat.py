"""The running driver's heartbeat in its experiment folder, so readers can tell a live sweep from a killed one."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from scenetune import atomic
from scenetune.errors import UserError
from scenetune.experiment import DRIVER_FILE, DRIVER_HEARTBEAT_S, running_driver

# Where drivers beat under a folder being resumed: a sweep, its refit; a chain's steps, their refits.
HEARTBEAT_PATTERNS = (DRIVER_FILE, f"*/{DRIVER_FILE}", f"*/*/{DRIVER_FILE}")
RESUME_LOCK_FILE = ".resume.lock"  # held by the process resuming the folder, for as long as its command runs

_held_resume_locks: dict[Path, int] = {}  # folder -> open descriptor of its lock, in this process


def _write(path: Path, started: float) -> None:
    beat = {"pid": os.getpid(), "host": socket.gethostname(), "started": started, "updated": time.time()}
    atomic.write_text(path, json.dumps(beat))


@contextlib.contextmanager
def driver_heartbeat(experiment_dir: Path | None) -> Iterator[None]:
    """Keep DRIVER_FILE fresh while the block runs; remove it when the block ends, however it ends."""
    if experiment_dir is None:  # remote storage: readers elsewhere rely on Ray's own state
        yield
        return
    path = Path(experiment_dir) / DRIVER_FILE
    started = time.time()
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(DRIVER_HEARTBEAT_S):
            with contextlib.suppress(OSError):
                _write(path, started)

    _write(path, started)
    thread = threading.Thread(target=beat, name="scenetune-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        path.unlink(missing_ok=True)


def refuse_if_running(directory: Path, what: str) -> None:
    """Resuming what a live driver still runs would put two drivers on one experiment: refuse, before
    any work, naming the process to wait for."""
    for pattern in HEARTBEAT_PATTERNS:
        for heartbeat in sorted(directory.glob(pattern)):
            driver = running_driver(heartbeat.parent)
            if driver is not None:
                since = time.strftime("%Y-%m-%d %H:%M", time.localtime(float(driver.get("started", 0))))
                raise UserError(
                    f"cannot resume: {what} {directory} is being run now by process {driver.get('pid')} "
                    f"on {driver.get('host')} (since {since}); wait for it to end or stop it first"
                )
    _hold_resume_lock(directory, what)


def _hold_resume_lock(directory: Path, what: str) -> None:
    """A resume loads its data before it starts beating, so two resumes started within those seconds
    would both pass the heartbeat check: the first holds an exclusive lock on the folder until its
    command ends (the kernel drops it if the process dies), and the second is refused."""
    folder = directory.resolve()
    if folder in _held_resume_locks:  # this process resumes it already (a study's step, a test session)
        return
    descriptor = os.open(folder / RESUME_LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(descriptor, 64).decode(errors="replace").strip() or "another process"
        os.close(descriptor)
        raise UserError(
            f"cannot resume: {what} {directory} is being resumed now by process {holder}; "
            "wait for it to end or stop it first"
        ) from None
    os.ftruncate(descriptor, 0)
    os.write(descriptor, f"{os.getpid()} on {socket.gethostname()}".encode())
    _held_resume_locks[folder] = descriptor


def release_resume_locks() -> None:
    """Let other processes resume the folders this command resumed (called when a command ends)."""
    for descriptor in _held_resume_locks.values():
        os.close(descriptor)
    _held_resume_locks.clear()

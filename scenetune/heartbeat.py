"""The running driver's heartbeat in its experiment folder, so readers can tell a live sweep from a killed one."""

from __future__ import annotations

import contextlib
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

"""Killing a command the way a user's `kill -9` or a crash does, in the tests of what survives it."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable

from scenetune.watchdog import alive, descendants


def kill_once(command: list[str], ready: Callable[[], bool], what: str) -> None:
    """Run `command`, SIGKILL it as soon as `ready()` holds, and wait until the Ray processes it started
    are gone (its watchdog ends them). Fails if the command ends on its own first."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while not ready():
            assert process.poll() is None, f"the command ended before {what}"
            time.sleep(0.1)
    finally:
        kill_and_wait_for_ray(process, group=False)


def kill_and_wait_for_ray(process: subprocess.Popen, group: bool) -> None:
    """SIGKILL a command (its whole process group if `group`) and wait until every process it had
    started is gone: Ray's services and trial workers, those of a trial still in its first epoch too
    (an orphaned worker can still save a checkpoint; a user resumes after they are gone)."""
    started = descendants({process.pid})
    if process.poll() is None:
        if group:
            os.killpg(process.pid, signal.SIGKILL)
        else:
            os.kill(process.pid, signal.SIGKILL)
    process.communicate()
    while alive(started):
        time.sleep(0.1)

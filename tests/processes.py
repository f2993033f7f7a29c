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
        started = descendants({process.pid})
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
        process.wait()
    while alive(started):
        time.sleep(0.1)

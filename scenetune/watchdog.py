"""Ends a local Ray instance whose driver died without shutting it down (`kill -9`, a crash).

Ray's head services (GCS, raylet, agents) and its trial workers outlive a killed driver and keep
running, holding CPUs and memory. The driver starts this watchdog in a session of its own, with the
read end of a pipe whose write end only the driver holds. While the driver lives, the watchdog notes
the processes that ray.init started (the driver's new children) and their descendants (the
workers); when the pipe reaches end-of-file (the driver is gone, however it ended), it stops those
still running with SIGTERM and then SIGKILL. When Ray shuts down normally, they end and so does the
watchdog.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

SNAPSHOT_PERIOD_S = 1.0
TERM_GRACE_S = 3.0

Process = tuple[int, str]  # pid and start time: a pid reused by a later process is never mistaken for it


def _stat(pid: int) -> tuple[int, str] | None:
    """(parent pid, start time) of a live process, or None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    if fields[0] == "Z":
        return None
    return int(fields[1]), fields[19]


def descendants(roots: set[int]) -> set[Process]:
    parents: dict[int, tuple[int, str]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (stat := _stat(int(entry))) is not None:
            parents[int(entry)] = stat
    found: set[Process] = set()
    frontier = set(roots)
    while frontier:
        children = {
            pid
            for pid, (parent, _) in parents.items()
            if parent in frontier and (pid, parents[pid][1]) not in found
        }
        found |= {(pid, parents[pid][1]) for pid in children}
        frontier = children
    return found


def alive(processes: set[Process]) -> set[Process]:
    return {
        (pid, started)
        for pid, started in processes
        if (stat := _stat(pid)) is not None and stat[1] == started
    }


def _signal(processes: set[Process], number: int) -> None:
    for pid, _ in processes:
        try:
            os.kill(pid, number)
        except ProcessLookupError:
            pass


def watch(roots: set[Process]) -> None:
    """Note the roots' descendants until stdin ends, then stop whatever is left of them."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the driver; its own handling shuts Ray down
    me = os.getpid()
    noted = set(roots)
    while True:
        readable, _, _ = select.select([sys.stdin], [], [], SNAPSHOT_PERIOD_S)
        if readable and not os.read(sys.stdin.fileno(), 1024):
            break  # end of file: the driver is gone
        roots = alive(roots)
        if not roots:
            return  # Ray was shut down the normal way
        noted = alive(noted) | roots | {p for p in descendants({pid for pid, _ in roots}) if p[0] != me}
    left = alive(noted)
    left |= {p for p in descendants({pid for pid, _ in left}) if p[0] != me}
    if not left:
        return
    _signal(left, signal.SIGTERM)
    deadline = time.monotonic() + TERM_GRACE_S
    while alive(left) and time.monotonic() < deadline:
        time.sleep(0.1)
    _signal(alive(left), signal.SIGKILL)


def children() -> set[Process]:
    """This process's children now."""
    return {
        p for p in descendants({os.getpid()}) if _stat(p[0]) is not None and _stat(p[0])[0] == os.getpid()
    }


def start_watchdog(ray_processes: set[Process]) -> None:
    """Watch the given processes (those ray.init just started) on behalf of this driver.

    Linux only (it reads /proc); elsewhere nothing happens.
    """
    if not ray_processes or not Path("/proc/self/stat").exists():
        return
    read_end, write_end = os.pipe()  # not inherited by Ray's processes (PEP 446): only the driver holds it
    arguments = [f"{pid}:{started}" for pid, started in sorted(ray_processes)]
    subprocess.Popen(
        [sys.executable, "-m", "scenetune.watchdog", *arguments],
        stdin=read_end,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    os.close(read_end)
    _KEEP.append(write_end)  # open until this process ends, however it ends


_KEEP: list[int] = []

if __name__ == "__main__":
    watch({(int(pid), started) for pid, started in (argument.split(":", 1) for argument in sys.argv[1:])})

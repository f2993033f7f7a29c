"""A disk cache of named numpy arrays, so that what many trials need is computed once per key.

A file lock makes concurrent trials on a node wait for the one computing a key instead of computing
it again. Importing this module must stay light: the sweep's driver asks it what is cached.
"""

from __future__ import annotations

import fcntl
import hashlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

import numpy as np

from scenetune.atomic import replaced_when_written

LOCK_POLL_S = 0.2


class PastDeadline(Exception):
    """Work that could not end before its trial's deadline; `what` says which, for the trial's report."""

    what = "its work"


class WaitPastDeadline(PastDeadline):
    """Another trial was still computing the same key when this trial's deadline passed."""

    what = "its wait for another trial computing the same arrays"


def _lock(lock: IO, deadline: float | None) -> None:
    """Take the key's lock; under a deadline (a time.perf_counter() value), give up when it passes."""
    if deadline is None:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return
    while True:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.perf_counter() >= deadline:
                raise WaitPastDeadline from None
            time.sleep(LOCK_POLL_S)


def cache_file(directory: Path, key: str) -> Path:
    """Where the arrays stored under `key` live."""
    return directory / f"{hashlib.sha256(key.encode()).hexdigest()[:24]}.npz"


def cached_arrays(
    directory: Path,
    key: str,
    compute: Callable[[], dict[str, np.ndarray]],
    deadline: float | None = None,
) -> tuple[dict[str, np.ndarray], bool]:
    """Arrays stored under `key`, computed by `compute` only if no trial has stored them yet.

    Returns the arrays and whether they came from the cache. If `compute` raises, nothing is stored.
    While another trial computes the same key this one waits, until `deadline` if there is one
    (then WaitPastDeadline).
    """
    directory.mkdir(parents=True, exist_ok=True)
    path = cache_file(directory, key)
    with open(path.with_suffix(".lock"), "w") as lock:
        _lock(lock, deadline)  # released when the file closes
        if path.is_file():
            with np.load(path) as saved:
                return {name: saved[name] for name in saved.files}, True
        arrays = compute()
        with replaced_when_written(path, suffix=".npz") as partial:
            np.savez(partial, **arrays)
        return arrays, False

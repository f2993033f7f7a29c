"""A disk cache of named numpy arrays, so that what many trials need is computed once per key.

A file lock makes concurrent trials on a node wait for the one computing a key instead of computing
it again. Importing this module must stay light: the sweep's driver asks it what is cached.
"""

from __future__ import annotations

import fcntl
import hashlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

from scenetune.atomic import replaced_when_written


def cache_file(directory: Path, key: str) -> Path:
    """Where the arrays stored under `key` live."""
    return directory / f"{hashlib.sha256(key.encode()).hexdigest()[:24]}.npz"


def cached_arrays(
    directory: Path, key: str, compute: Callable[[], dict[str, np.ndarray]]
) -> tuple[dict[str, np.ndarray], bool]:
    """Arrays stored under `key`, computed by `compute` only if no trial has stored them yet.

    Returns the arrays and whether they came from the cache. If `compute` raises, nothing is stored.
    """
    directory.mkdir(parents=True, exist_ok=True)
    path = cache_file(directory, key)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if path.is_file():
            with np.load(path) as saved:
                return {name: saved[name] for name in saved.files}, True
        arrays = compute()
        with replaced_when_written(path, suffix=".npz") as partial:
            np.savez(partial, **arrays)
        return arrays, False

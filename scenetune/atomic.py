"""Files written whole or not at all: a reader, or a kill while writing, never sees half of one."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def replaced_when_written(path: Path, suffix: str = "") -> Iterator[Path]:
    """A private path beside `path` to write to; it replaces `path` once the block ends without error.

    `suffix` keeps an extension that a writer insists on (np.savez appends ".npz" otherwise).
    """
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial{suffix}")
    try:
        yield partial
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def write_text(path: Path, text: str) -> None:
    with replaced_when_written(path) as partial:
        partial.write_text(text)

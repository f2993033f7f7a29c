"""A benchmark's section of BENCHMARKS.md: the text between its markers, rewritten by each run while
the hand-written notes around it stay."""

from __future__ import annotations

from pathlib import Path


def write_section(out: Path, start: str, end: str, section: str) -> None:
    """Put `section` (which begins with `start` and ends with `end`) where the markers are, or at the end."""
    current = out.read_text() if out.is_file() else ""
    if start in current and end in current:
        before, rest = current.split(start, 1)
        current = before + section + rest.split(end, 1)[1]
    else:
        current = current.rstrip("\n") + "\n\n" + section + "\n"
    out.write_text(current)

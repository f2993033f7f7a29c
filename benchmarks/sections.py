"""A benchmark's section of BENCHMARKS.md: the text between its markers, rewritten by each run while
the hand-written notes around it stay."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from scenetune.environment import source_commit

REPO = Path(__file__).resolve().parents[1]


def write_section(out: Path, start: str, end: str, section: str) -> None:
    """Put `section` (which begins with `start` and ends with `end`) where the markers are, or at the end."""
    current = out.read_text() if out.is_file() else ""
    if start in current and end in current:
        before, rest = current.split(start, 1)
        current = before + section + rest.split(end, 1)[1]
    else:
        current = current.rstrip("\n") + "\n\n" + section + "\n"
    out.write_text(current)


def current_commit() -> str:
    """HEAD's short hash, marked `-dirty` when the working tree differs from it."""
    return source_commit(REPO) or "unknown"


def search_reader_parser(description: str, name: str) -> argparse.ArgumentParser:
    """The arguments of a benchmark that reads the searches `search_quality.py` kept: where they are,
    and where its figures go (benchmarks/<name>.json and BENCHMARKS.md)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--storage", type=Path, default=Path("/tmp/scenetune-search-quality"))
    parser.add_argument("--json", type=Path, default=REPO / "benchmarks" / f"{name}.json")
    parser.add_argument("--out", type=Path, default=REPO / "BENCHMARKS.md")
    return parser


def search_folders(storage: Path, *patterns: str) -> list[Path]:
    """The run folders of `search_quality.py` in `storage` that match any of `patterns`, in name order
    (not the descriptor caches beside them)."""
    return sorted(
        {
            p
            for pattern in patterns
            for p in storage.glob(pattern)
            if p.is_dir() and not p.name.endswith(".cache")
        }
    )


def publish(args: argparse.Namespace, result: dict, start: str, end: str, section: str) -> None:
    """Write the figures to --json and the section to --out, and show the section."""
    args.json.write_text(json.dumps(result, indent=1) + "\n")
    write_section(args.out, start, end, section)
    print(section)

"""Put a finished `scenetune replicate` run into BENCHMARKS.md: its conclusions and every table row
beside the study's published value, between the markers <!-- replication:start/end -->.

    .venv/bin/python benchmarks/replication_section.py RUN_FOLDER --wall "1 h 58 min" [--out BENCHMARKS.md]

The figures come from the run's replication.json (written by `scenetune replicate`); nothing here
computes a number of its own.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
START, END = "<!-- replication:start -->", "<!-- replication:end -->"


def _number(value: Any) -> str:
    return "-" if value is None else f"{value:.3f}"


def _difference(value: Any) -> str:
    return "-" if value is None else f"{value:+.3f}"


def section(run: Path, wall: str) -> str:
    replication = json.loads((run / "replication.json").read_text())
    request = replication["request"]
    command = (
        f"scenetune replicate --data {request['data']} --epochs {request['epochs'] or 'default'}"
        f" --protocol {request['protocol']} --carry {request['carry']} --seed {request['seed']}"
    )
    marks = [c["mark"] for c in replication["conclusions"]]
    measured = sum(mark != "not measured" for mark in marks)
    lines = [
        "## Reproducing the study",
        "",
        f"`{command}` on 2 CPU cores, Python {platform.python_version()}, no GPU: **{wall}** of wall clock."
        " Validation is the test folder, as in the study (`--protocol study`); each value is"
        " the trial's best validation epoch. The study trained on 256x256 originals; this is the 64x64 copy,"
        " so the 128x128 input point is upsampled and the patch grid is coarser (8x8 patches are 64 per image"
        " instead of 1024; 64x64 patches are the whole image). Published values are the study's"
        " (`analysis/published/study.csv`).",
        "",
        f"The study's written conclusions, computed from this run: **{marks.count('agrees')} of {measured}** agree, "
        f"{marks.count('disagrees')} disagree{'s' if marks.count('disagrees') == 1 else ''}, and for {marks.count('cannot tell')} the test images cannot tell "
        "the rows the claim ranks apart (`cannot tell`: McNemar's exact test on the two trials' per-image "
        "predictions, p >= 0.05 or a 95% paired-bootstrap interval of the difference that covers 0).",
        "",
        *[f"- **{c['mark']}**: {c['claim']} ({c['evidence']})." for c in replication["conclusions"]],
        "",
        "| table | row | measured (val) | test_acc | published | difference |",
        "|---|---|---|---|---|---|",
    ]
    for row in replication["tables"]:
        measured = _number(row["measured"]) + ("" if row["metric"] == "val_acc" else f" ({row['metric']})")
        lines.append(
            f"| {row['table']} | {row['row']} | {measured} | {_number(row['test_acc'])}"
            f" | {_number(row['published'])} | {_difference(row['difference'])} |"
        )
    return "\n".join([START, *lines, END])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="the replication's folder")
    parser.add_argument("--wall", required=True, help='its measured wall-clock time, e.g. "1 h 58 min"')
    parser.add_argument("--out", type=Path, default=REPO / "BENCHMARKS.md")
    args = parser.parse_args()
    if not (args.run / "replication.json").is_file():
        print(f"replication_section: {args.run} has no replication.json", file=sys.stderr)
        return 2
    text = args.out.read_text()
    block = section(args.run, args.wall)
    pattern = re.compile(re.escape(START) + ".*?" + re.escape(END), re.DOTALL)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else f"{text.rstrip()}\n\n{block}\n"
    args.out.write_text(text)
    print(f"replication_section: wrote the replication of {args.run} into {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

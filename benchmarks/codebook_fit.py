"""How long a BoVW codebook fit takes, where that time goes, and how well the cost estimate predicts it.

Fits the codebook of each k as a BoVW trial does (`trainables.descriptors.codebook_kmeans`:
MiniBatchKMeans, three k-means++ initialisations on three batches of 4 k descriptors each, on a
seeded sample of at most 100,000 descriptors) on the learnt descriptors of a patch MLP (`--from`,
an experiment or checkpoint; its last hidden layer unless `--layer`) or on dense SIFT (`--sift`),
computed from the training images of `--data`. For each k it records:

- the fit's seconds, and the share of them spent in the k-means++ initialisations (until the first
  mini-batch step ends);
- the work that the sweep's cost estimate gives the fit (`trainables.bovw.codebook_fit_work`) and
  the seconds per unit of work. The estimate multiplies the fastest rate measured so far by a new
  configuration's work, so the spread of these rates over k bounds how far off it can be.

Times are also given as ratios against the baseline k (the study's codebook, 256) in the same run.

    .venv/bin/python benchmarks/codebook_fit.py --from EXPERIMENT [--layer NAME] [--data DIR]
        [--k 64 256 469 900] [--out BENCHMARKS.md]
    .venv/bin/python benchmarks/codebook_fit.py --sift [--image-size 64] [--k ...]

The figures go to benchmarks/codebook_fit.json and into BENCHMARKS.md between the measurement's
markers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sklearn.cluster import MiniBatchKMeans  # noqa: E402

from benchmarks.sections import current_commit  # noqa: E402
from benchmarks.sections import write_section as write_marked_section  # noqa: E402
from scenetune.data import load_dataset  # noqa: E402
from scenetune.sources import resolve_source  # noqa: E402
from trainables.bovw import codebook_fit_work  # noqa: E402
from trainables.descriptors import (  # noqa: E402
    Descriptors,
    codebook_kmeans,
    codebook_sample,
    dense_sift,
    learnt_descriptors,
)

MIT_SPLIT = REPO.parent / "shared" / "datasets" / "MIT_split"
BASELINE_K = 256
START, END = "<!-- codebook_fit:start -->", "<!-- codebook_fit:end -->"


class TimedKMeans(MiniBatchKMeans):
    """scikit-learn's MiniBatchKMeans, unchanged, noting when its first mini-batch step ends: its
    initialisations are done by then (a measurement hook on a private method; benchmarks only)."""

    def _mini_batch_convergence(self, step: int, *args: Any, **kwargs: Any) -> bool:
        if step == 0:
            self.initialised_at = time.perf_counter()
        return super()._mini_batch_convergence(step, *args, **kwargs)


def training_descriptors(args: argparse.Namespace) -> tuple[Descriptors, str]:
    """The training images' descriptors, and a line naming them."""
    if args.sift:
        images = load_dataset(str(args.data), [args.image_size]).train[args.image_size].x
        named = f"dense SIFT (step {args.sift_step}, size {args.sift_size}) on {len(images)} training images of {args.image_size} px"
        return dense_sift(images, args.sift_step, args.sift_size), named
    source = resolve_source(args.source, ("patch_mlp",), "this benchmark")
    layer = args.layer or source.hidden_layers[-1]
    side = int(source.description["image_size"])
    images = load_dataset(str(args.data), [side]).train[side].x
    named = f"the patch MLP layer {layer} ({source.checkpoint}) on {len(images)} training images"
    return learnt_descriptors(source.checkpoint, images, layer), named


def measure(train: Descriptors, k: int, seed: int) -> dict[str, Any]:
    values = codebook_sample(train, seed)
    kmeans = TimedKMeans(**codebook_kmeans(k, seed).get_params())
    started = time.perf_counter()
    kmeans.fit(values)
    seconds = time.perf_counter() - started
    work = codebook_fit_work(len(train.values), values.shape[1], k)
    return {
        "k": k,
        "descriptors": len(values),
        "dimensions": int(values.shape[1]),
        "seconds": seconds,
        "initialisation_share": (kmeans.initialised_at - started) / seconds,
        "work": work,
        "seconds_per_work": seconds / work,
    }


def table(rows: list[dict[str, Any]]) -> str:
    baseline = next((row for row in rows if row["k"] == BASELINE_K), rows[0])
    fastest = min(row["seconds_per_work"] for row in rows)
    lines = [
        f"| k | fit seconds | x the k = {baseline['k']} fit | in k-means++ initialisations | work (estimate's unit) "
        "| seconds per unit of work | x the fastest rate |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['k']} | {row['seconds']:.1f} | {row['seconds'] / baseline['seconds']:.2f} "
            f"| {100 * row['initialisation_share']:.0f}% | {row['work']:.3g} | {row['seconds_per_work']:.3g} "
            f"| {row['seconds_per_work'] / fastest:.2f} |"
        )
    return "\n".join(lines)


def write_section(out: Path, command: str, named: str, rows: list[dict[str, Any]]) -> None:
    section = "\n".join(
        [
            START,
            f"## A BoVW codebook fit: its time, and its cost estimate (`{command}`)",
            "",
            f"Commit {current_commit()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}, "
            f"{time.strftime('%Y-%m-%d')}: one fit at a time, the machine otherwise idle, on {rows[0]['descriptors']:,} "
            f"descriptors of {rows[0]['dimensions']} dimensions ({named}).",
            "",
            table(rows),
            END,
        ]
    )
    write_marked_section(out, START, END, section)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--from", dest="source", help="a patch_mlp experiment or checkpoint")
    parser.add_argument("--layer", help="its hidden layer (default: the last)")
    parser.add_argument("--sift", action="store_true", help="dense SIFT descriptors instead")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--sift-step", type=int, default=8)
    parser.add_argument("--sift-size", type=int, default=16)
    parser.add_argument("--data", type=Path, default=MIT_SPLIT)
    parser.add_argument("--k", type=int, nargs="+", default=[64, BASELINE_K, 469, 900])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=REPO / "BENCHMARKS.md")
    args = parser.parse_args()
    if not args.sift and not args.source:
        parser.error("give --from a patch_mlp experiment or checkpoint, or --sift")
    train, named = training_descriptors(args)
    rows = []
    for k in args.k:
        rows.append(measure(train, k, args.seed))
        print(json.dumps(rows[-1]), flush=True)
    (REPO / "benchmarks" / "codebook_fit.json").write_text(
        json.dumps({"descriptors": named, "commit": current_commit(), "rows": rows}, indent=2) + "\n"
    )
    command = "python " + " ".join(["benchmarks/codebook_fit.py", *sys.argv[1:]])
    write_section(args.out, command, named, rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

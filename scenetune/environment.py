"""What an experiment ran on: the library versions and the arithmetic of the machine.

A seeded trial repeats exactly only where its floating-point arithmetic does: the same versions of
the libraries that compute, and the same instruction set that torch's CPU kernels dispatch to (AVX2
and AVX-512 round a network's sums differently; benchmarks/reproducibility.py measures how much that
moves a result). The record keeps both, so that a number can be traced to what produced it and a
resume on another machine says that its new trials will not repeat the old ones bit for bit.
"""

from __future__ import annotations

import functools
import json
import os
import platform
import subprocess
import sys
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

# The libraries whose versions change what a trial computes or which trials a search proposes.
COMPUTING_PACKAGES = (
    "scenetune",
    "torch",
    "numpy",
    "scikit-learn",
    "scipy",
    "opencv-python-headless",
    "pillow",
    "optuna",
    "ray",
)
CPUINFO = Path("/proc/cpuinfo")
SOURCE_ROOT = Path(__file__).resolve().parents[1]


def _package_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


# What a checkout computes with: a changed README, or a benchmark's own figures, leave it clean.
CODE_PATHS = ("*.py", "pyproject.toml")


def source_commit(root: Path = SOURCE_ROOT) -> str | None:
    """The short hash of the git checkout that `root` is, marked `-dirty` when its tracked code
    differs from that commit; None for an installed package (its version says what it is) or
    without git."""
    if not (root / ".git").exists():
        return None
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=root
        )
        changes = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", *CODE_PATHS],
            capture_output=True,
            text=True,
            cwd=root,
        )
    except OSError:
        return None
    if head.returncode != 0:
        return None
    return head.stdout.strip() + ("-dirty" if changes.stdout.strip() else "")


def cpu_model() -> str:
    """The processor's marketing name where the system tells it, else its architecture."""
    if CPUINFO.is_file():
        for line in CPUINFO.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def torch_cpu_capability() -> str:
    """The instruction set torch's CPU kernels use in this process (e.g. AVX512, AVX2, DEFAULT); for a
    process that computes with torch already (a trial), as importing it costs seconds."""
    import torch

    return torch.backends.cpu.get_cpu_capability()


# Run in a child process: a sweep's driver never imports torch (1.4 s warm, ~5 s from a cold disk).
TORCH_PROBE = """
import json, torch
gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
print(json.dumps({"torch_cpu_capability": torch.backends.cpu.get_cpu_capability(), "gpus": gpus}))
"""


@functools.cache
def start_probing_torch() -> subprocess.Popen[str]:
    """Start finding torch's arithmetic in a child process; called before Ray starts, so that its
    import overlaps Ray's start-up instead of adding to it."""
    return subprocess.Popen(
        [sys.executable, "-c", TORCH_PROBE], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


@functools.cache
def torch_arithmetic() -> dict[str, Any]:
    """The instruction set of torch's CPU kernels and the GPUs it sees, as this process's environment
    would give them to a torch it imported."""
    probe = start_probing_torch()
    output, errors = probe.communicate()
    if probe.returncode != 0:
        last_line = errors.strip().splitlines()[-1] if errors.strip() else f"exit code {probe.returncode}"
        raise RuntimeError(f"could not ask torch for its CPU instruction set and GPUs: {last_line}")
    return json.loads(output)


def current_environment() -> dict[str, Any]:
    """This process's environment, as scenetune.json records it under `environment`."""
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpus": os.cpu_count(),
        **torch_arithmetic(),
        "packages": {name: _package_version(name) for name in COMPUTING_PACKAGES},
        # Kept to trace a number to its code, not compared on resume: a checkout's commits move on.
        "scenetune_commit": source_commit(),
    }


def arithmetic_differences(recorded: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """How `current` computes differently from `recorded`, one phrase per difference ('torch 2.13.0
    -> 2.14.1'); empty where a trial would repeat exactly. An experiment recorded before environments
    were kept has nothing to compare."""
    if not recorded:
        return []
    changes = []
    old_packages, new_packages = recorded.get("packages", {}), current.get("packages", {})
    for name in sorted(set(old_packages) | set(new_packages)):
        if old_packages.get(name) != new_packages.get(name):
            changes.append(f"{name} {old_packages.get(name)} -> {new_packages.get(name)}")
    for key, label in (("torch_cpu_capability", "torch's CPU instruction set"), ("gpus", "GPUs")):
        if recorded.get(key) != current.get(key):
            changes.append(f"{label} {_shown(recorded.get(key))} -> {_shown(current.get(key))}")
    return changes


def differing_environments(environments: Mapping[str, dict[str, Any] | None]) -> str | None:
    """One sentence where experiments (by name) were computed with different arithmetic, naming what
    differs from the first one's; None where they share it or where fewer than two recorded one."""
    recorded = [(name, environment) for name, environment in environments.items() if environment]
    if len(recorded) < 2:
        return None
    (first_name, first), others = recorded[0], recorded[1:]
    differing = [(name, arithmetic_differences(first, environment)) for name, environment in others]
    described = [f"{name} ({'; '.join(changes)})" for name, changes in differing if changes]
    if not described:
        return None
    return (
        f"computed in other environments than {first_name}: {', '.join(described)}; a difference between "
        "them comes from the arithmetic as well as from the configurations"
    )


def _shown(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(value) if value else "none"
    return str(value)


def describe(environment: dict[str, Any]) -> str:
    """One line for a report: 'Python 3.11.7, scenetune 0.1.0, torch 2.13.0+cpu, ...; torch's CPU
    kernels: AVX512; on 2 x AMD EPYC, no GPU'."""
    packages = environment.get("packages", {})
    commit = environment.get("scenetune_commit")
    versions = ", ".join(
        f"{name} {version}" + (f" (commit {commit})" if name == "scenetune" and commit else "")
        for name, version in packages.items()
        if version
    )
    gpus = environment.get("gpus") or []
    machine = f"{environment.get('cpus')} x {environment.get('cpu')}"
    return (
        f"Python {environment.get('python')}, {versions}; torch's CPU kernels: "
        f"{environment.get('torch_cpu_capability')}; on {machine}, "
        + (f"GPUs: {', '.join(gpus)}" if gpus else "no GPU")
    )


def environment_section(environments: Mapping[str, dict[str, Any] | None]) -> list[str]:
    """A report's account of what computed its experiments (by name): one line where they share an
    environment, one per experiment where they do not; nothing where none was recorded."""
    described = {name: describe(environment) for name, environment in environments.items() if environment}
    if not described:
        return []
    lines = set(described.values())
    body = list(lines) if len(lines) == 1 else [f"- `{name}`: {line}" for name, line in described.items()]
    return ["## Environment", "", *body, "", REPEATS, ""]


REPEATS = (
    "A trial repeats exactly where it ran: the same configuration with the same seed trains to the same "
    "numbers with these library versions, this instruction set of torch's CPU kernels and the same CPUs "
    "per trial. Which configurations a time-budgeted search reaches also depends on the machine's speed. "
    "On another instruction set a network's sums round differently and its results move (BENCHMARKS.md, "
    "reproducibility)."
)

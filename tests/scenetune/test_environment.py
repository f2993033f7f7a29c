"""The environment an experiment records: what computed it, and what a resume elsewhere changes."""

from __future__ import annotations

import platform
import subprocess
from pathlib import Path

import torch

from scenetune.environment import (
    arithmetic_differences,
    current_environment,
    describe,
    differing_environments,
    environment_section,
    source_commit,
)


def test_the_environment_names_the_versions_and_the_instruction_set_that_compute() -> None:
    environment = current_environment()
    assert environment["packages"]["torch"].startswith(torch.__version__.split("+")[0])
    assert environment["torch_cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert environment["python"] == platform.python_version()
    assert set(environment["packages"]) >= {"torch", "numpy", "scikit-learn", "ray", "optuna"}
    line = describe(environment)
    assert f"torch {environment['packages']['torch']}" in line
    assert f"torch's CPU kernels: {environment['torch_cpu_capability']}" in line


def test_only_what_changes_the_arithmetic_counts_as_a_difference() -> None:
    recorded = current_environment()
    assert arithmetic_differences(recorded, recorded) == []
    moved = {**recorded, "cpu": "another model", "cpus": 64, "platform": "elsewhere"}
    assert arithmetic_differences(recorded, moved) == []  # descriptions, not arithmetic
    upgraded = {
        **recorded,
        "packages": {**recorded["packages"], "numpy": "0.1"},
        "torch_cpu_capability": "AVX2",
        "gpus": ["a GPU"],
    }
    changes = arithmetic_differences({**recorded, "torch_cpu_capability": "AVX512", "gpus": []}, upgraded)
    assert changes == [
        f"numpy {recorded['packages']['numpy']} -> 0.1",
        "torch's CPU instruction set AVX512 -> AVX2",
        "GPUs none -> a GPU",
    ]


def test_an_experiment_recorded_before_environments_were_kept_has_nothing_to_compare() -> None:
    assert arithmetic_differences({}, current_environment()) == []


def test_a_machine_with_gpus_is_described_with_them() -> None:
    line = describe({**current_environment(), "gpus": ["NVIDIA H100", "NVIDIA H100"]})
    assert line.endswith("GPUs: NVIDIA H100, NVIDIA H100")
    assert describe({**current_environment(), "gpus": []}).endswith("no GPU")


def test_a_report_names_each_experiments_environment_where_they_differ() -> None:
    here = current_environment()
    elsewhere = {**here, "torch_cpu_capability": "AVX2"}
    shared = environment_section({"mlp": here, "bovw_sift": here, "old": None})
    assert shared[:4] == ["## Environment", "", describe(here), ""]
    differing = environment_section({"mlp": here, "bovw_sift": elsewhere})
    assert differing[2:4] == [f"- `mlp`: {describe(here)}", f"- `bovw_sift`: {describe(elsewhere)}"]
    assert environment_section({"old": None}) == []  # recorded before environments were kept


def test_experiments_computed_differently_are_named_with_what_differs() -> None:
    here = current_environment()
    elsewhere = {**here, "torch_cpu_capability": "AVX2"}
    assert differing_environments({"a": here, "b": {**here, "cpus": 96}, "old": None}) is None
    assert differing_environments({"a": here}) is None
    sentence = differing_environments({"a": here, "b": here, "c": elsewhere})
    assert sentence is not None and sentence.startswith("computed in other environments than a: c (")
    assert f"torch's CPU instruction set {here['torch_cpu_capability']} -> AVX2" in sentence
    assert "b (" not in sentence


def _git(root: Path, *args: str) -> str:
    command = ["git", "-c", "user.name=scenetune", "-c", "user.email=scenetune@localhost", *args]
    return subprocess.run(command, cwd=root, capture_output=True, text=True, check=True).stdout.strip()


def test_a_checkout_records_its_commit_and_whether_its_files_differ_from_it(tmp_path: Path) -> None:
    assert source_commit(tmp_path) is None  # an installed package: its version says what it is
    _git(tmp_path, "init", "-q")
    (tmp_path / "train.py").write_text("lr = 1e-3\n")
    _git(tmp_path, "add", "train.py")
    _git(tmp_path, "commit", "-q", "-m", "first")
    head = _git(tmp_path, "rev-parse", "--short", "HEAD")
    assert source_commit(tmp_path) == head
    # Figures a benchmark writes, notes and files the checkout does not track change no result.
    (tmp_path / "figures.json").write_text("{}\n")
    _git(tmp_path, "add", "figures.json")
    _git(tmp_path, "commit", "-q", "-m", "figures")
    head = _git(tmp_path, "rev-parse", "--short", "HEAD")
    (tmp_path / "figures.json").write_text('{"accuracy": 0.6}\n')
    (tmp_path / "notes.txt").write_text("untracked\n")
    assert source_commit(tmp_path) == head
    (tmp_path / "train.py").write_text("lr = 1e-4\n")
    assert source_commit(tmp_path) == f"{head}-dirty"


def test_a_report_names_the_commit_that_computed_it() -> None:
    environment = {**current_environment(), "scenetune_commit": "abc1234"}
    version = environment["packages"]["scenetune"]
    assert f"scenetune {version} (commit abc1234)" in describe(environment)
    assert "commit" not in describe({**environment, "scenetune_commit": None})

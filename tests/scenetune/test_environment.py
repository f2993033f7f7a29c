"""The environment an experiment records: what computed it, and what a resume elsewhere changes."""

from __future__ import annotations

import platform

import torch

from scenetune.environment import (
    arithmetic_differences,
    current_environment,
    describe,
    differing_environments,
    environment_section,
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

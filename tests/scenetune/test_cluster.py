"""Distributed sweeps: the launcher file, and a real two-node Ray cluster started with `ray start`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from scenetune.experiment import load_trials
from tests.conftest import REPO_ROOT

RAY = Path(sys.executable).with_name("ray")


def test_cluster_yaml_validates_against_the_autoscaler_schema() -> None:
    import jsonschema
    import ray.autoscaler

    schema = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
    config = yaml.safe_load((REPO_ROOT / "cluster.yaml").read_text())
    jsonschema.validate(config, schema)  # raises ValidationError on any unknown, misspelt or missing field
    assert config["available_node_types"]["gpu_worker"]["max_workers"] >= 1
    assert any("scenetune" in command for command in config["setup_commands"])


def test_cluster_yaml_passes_the_checks_of_ray_up() -> None:
    """`ray up` fills the autoscaler's defaults (prepare_config), then validates (validate_config). No
    node pins an image id, so Ray picks its own Deep Learning AMI for the region rather than failing
    on a placeholder."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = prepare_config(yaml.safe_load((REPO_ROOT / "cluster.yaml").read_text()))
    validate_config(config)
    assert config["provider"]["type"] == "aws" and config["head_node_type"] in config["available_node_types"]
    assert all("ImageId" not in node["node_config"] for node in config["available_node_types"].values())


def _ray(*arguments: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([str(RAY), *arguments], capture_output=True, text=True, env=env, timeout=300)


def _stop_nodes_under(temp_dir: str) -> None:
    """Stop this cluster's processes only: `ray stop` would also stop other Ray instances on the machine."""
    subprocess.run(["pkill", "-TERM", "-f", temp_dir], check=False)
    for _ in range(50):
        if subprocess.run(["pgrep", "-f", temp_dir], capture_output=True).returncode != 0:
            break
        time.sleep(0.2)
    subprocess.run(["pkill", "-KILL", "-f", temp_dir], check=False)


@pytest.fixture()
def two_node_cluster():
    """A head and a worker node on this machine, one CPU each, torn down at the end."""
    temp_dir = tempfile.mkdtemp(prefix="st-ray-", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    # Loopback only, and no token: this throwaway cluster lives on this machine for one test.
    env = {**os.environ, "RAY_TMPDIR": temp_dir, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
    port = "6391"
    head = _ray(
        "start",
        "--head",
        "--node-ip-address=127.0.0.1",
        f"--port={port}",
        "--num-cpus=1",
        "--num-gpus=0",
        "--include-dashboard=false",
        "--disable-usage-stats",
        env=env,
    )
    assert head.returncode == 0, head.stderr
    try:
        worker = _ray(
            "start",
            f"--address=127.0.0.1:{port}",
            "--node-ip-address=127.0.0.1",
            "--num-cpus=1",
            "--num-gpus=0",
            env=env,
        )
        assert worker.returncode == 0, worker.stderr
        yield f"127.0.0.1:{port}", env
    finally:
        _stop_nodes_under(temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)


def test_sweep_on_a_two_node_cluster_uses_both_nodes(two_node_cluster, tmp_path: Path) -> None:
    address, env = two_node_cluster
    command = [
        sys.executable,
        "-m",
        "scenetune",
        "sweep",
        "mlp",
        "--address",
        address,
        "--samples",
        "4",
        "--epochs",
        "2",
        "--set",
        "image_size=8",
        "--set",
        "width=32",
        "--storage",
        str(tmp_path / "results"),
        "--name",
        "cluster",
    ]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    trials = load_trials(tmp_path / "results" / "cluster")
    assert len(trials) == 4
    nodes = {report["node_id"] for trial in trials for report in trial.history}
    assert len(nodes) == 2  # trials ran on the head and on the worker


def test_more_gpus_than_the_cluster_has_is_an_error_not_a_hang(two_node_cluster, tmp_path: Path) -> None:
    address, env = two_node_cluster
    command = [
        sys.executable,
        "-m",
        "scenetune",
        "sweep",
        "mlp",
        "--address",
        address,
        "--gpus-per-trial",
        "0.25",
        "--storage",
        str(tmp_path),
        "--name",
        "gpu",
    ]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 2
    assert (
        "scenetune: error: --gpus-per-trial 0.25 asks for GPUs, but the Ray cluster has none" in result.stderr
    )

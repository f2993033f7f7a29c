"""Which driver runs an experiment now, and the refusal to resume what a live driver still runs."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from scenetune.experiment import DRIVER_FILE, running_driver
from scenetune.study import STATE_FILE


@pytest.fixture
def live_process() -> Iterator[subprocess.Popen]:
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    yield process
    process.kill()
    process.wait()


def write_heartbeat(folder: Path, pid: int, started: float) -> None:
    """The heartbeat as a driver writes it (scenetune.heartbeat)."""
    folder.mkdir(parents=True, exist_ok=True)
    beat = {"pid": pid, "host": socket.gethostname(), "started": started, "updated": time.time()}
    (folder / DRIVER_FILE).write_text(json.dumps(beat))


def test_a_pid_taken_by_a_process_that_started_after_the_heartbeat_is_not_the_driver(
    tmp_path: Path, live_process: subprocess.Popen
) -> None:
    # After a kill -9 and a reboot, the heartbeat's pid may belong to some other, later process.
    write_heartbeat(tmp_path, live_process.pid, started=time.time() - 3600)
    assert running_driver(tmp_path) is None
    write_heartbeat(tmp_path, live_process.pid, started=time.time())
    assert running_driver(tmp_path)["pid"] == live_process.pid
    live_process.kill()
    live_process.wait()
    assert running_driver(tmp_path) is None


def test_resuming_a_study_whose_step_is_running_is_refused_before_any_work(
    tmp_path: Path, live_process: subprocess.Popen
) -> None:
    study = tmp_path / "busy"
    study.mkdir()
    state = '{"request": {}, "steps": {"mlp": "running"}}'
    (study / STATE_FILE).write_text(state)
    write_heartbeat(study / "mlp" / "refit", live_process.pid, started=time.time())
    resumed = subprocess.run(
        [
            sys.executable,
            "-m",
            "scenetune",
            "study",
            "--storage",
            str(tmp_path),
            "--name",
            "busy",
            "--resume",
        ],
        capture_output=True,
        text=True,
    )
    assert resumed.returncode == 2
    message = resumed.stderr.strip().splitlines()
    assert len(message) == 1 and message[0].startswith(
        f"scenetune: error: cannot resume: study {study} is being run now by process {live_process.pid}"
    )
    assert (study / STATE_FILE).read_text() == state  # nothing was touched

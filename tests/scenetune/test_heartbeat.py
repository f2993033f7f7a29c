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


def test_a_resume_started_while_another_resume_loads_its_data_is_refused(tmp_path: Path) -> None:
    """Before its heartbeat beats, a resume holds the folder's lock from its check on (here a process
    stopped right after that check, where a real resume loads its data)."""
    experiment = tmp_path / "loading"
    experiment.mkdir()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from scenetune.heartbeat import refuse_if_running; "
            "refuse_if_running(Path(sys.argv[1]), 'experiment'); print('checked', flush=True); time.sleep(600)",
            str(experiment),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "checked"
        command = [sys.executable, "-m", "scenetune", "sweep", "mlp", "--storage", str(tmp_path)]
        second = subprocess.run([*command, "--name", "loading", "--resume"], capture_output=True, text=True)
        assert second.returncode == 2
        assert second.stderr.strip().splitlines() == [
            f"scenetune: error: cannot resume: experiment {experiment} is being resumed now by process "
            f"{holder.pid} on {socket.gethostname()}; wait for it to end or stop it first"
        ]
    finally:
        holder.kill()
        holder.wait()
    # The kernel dropped the dead holder's lock: the resume gets past the check (to the missing record).
    third = subprocess.run([*command, "--name", "loading", "--resume"], capture_output=True, text=True)
    assert (
        third.returncode == 2 and "being resumed now" not in third.stderr and str(experiment) in third.stderr
    )

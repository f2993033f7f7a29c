"""The dashboard while sweeps run and after they are killed: every answer is 200 and strict JSON from a
sweep's first second to its end, a killed sweep's trials read `interrupted`, and its page and report
render. Real sweeps in their own processes, a real server, Debian's Chromium where it is installed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from analysis.results import load_experiment
from scenetune.cli import main
from scenetune.experiment import load_trials
from scenetune.watchdog import alive, descendants
from tests.conftest import CHROMIUM, chromium_page, dashboard_server, strict_json

pytestmark = pytest.mark.integration  # real sweeps, servers and browsers

# Big enough that a trial's first epoch takes seconds on 2 cores, so polls see trials without results
# (at 32x32 an epoch took ~2 s, and one CI run's polls, each a home and an experiment answer, missed both).
SLOW_TRIALS = ["--set", "image_size=64", "--set", "width=2048", "--set", "batch_size=16"]
POLL_S = 0.2


def _scenetune(*arguments: str) -> list[str]:
    return [sys.executable, "-m", "scenetune", *arguments]


def _listening_addresses(pids: set[int]) -> set[str]:
    """The local addresses (hex, as /proc/net shows them) on which the given processes listen for TCP."""
    inodes = set()
    for pid in pids:
        try:
            links = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
        except OSError:
            continue
        inodes |= {link[len("socket:[") : -1] for link in links if link.startswith("socket:[")}
    addresses = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                addresses.add(fields[1].split(":")[0])
    return addresses


LOOPBACK = {"0100007F", "00000000000000000000000001000000", "0000000000000000FFFF00000100007F"}


@dataclass
class Observation:
    answers: list[tuple[str, int, str]] = field(default_factory=list)  # path, status code, body
    statuses: list[set[str]] = field(default_factory=list)
    trials_without_result: int = 0
    addresses: set[str] = field(default_factory=set)
    console_errors: list[str] = field(default_factory=list)
    rows_shown: int = 0


def _poll(client: httpx.Client, url: str, observation: Observation, experiment_id: str) -> None:
    for path in ("/api/home", f"/api/experiment/{experiment_id}"):
        response = client.get(url + path)
        observation.answers.append((path, response.status_code, response.text))
        if path != "/api/home" and response.status_code == 200:
            trials = strict_json(response.text)["trials"]
            observation.statuses.append({t["status"] for t in trials})
            observation.trials_without_result += sum(t["val_acc"] is None for t in trials)


@pytest.fixture(scope="module")
def observed_sweep(tmp_path_factory: pytest.TempPathFactory) -> Observation:
    """A 2-trial sweep polled from before its folder exists to its end, with the page open in a browser."""
    root = tmp_path_factory.mktemp("live") / "results"
    root.mkdir()
    observation = Observation()
    command = _scenetune(
        "sweep",
        "mlp",
        "--samples",
        "2",
        "--epochs",
        "2",
        "--max-concurrent",
        "1",
        *SLOW_TRIALS,
        "--storage",
        str(root),
        "--name",
        "live",
    )
    with dashboard_server(root) as url, httpx.Client() as client:
        page_context = chromium_page() if CHROMIUM.exists() else None
        page = page_context.__enter__() if page_context else None
        sweep = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            while sweep.poll() is None:
                started = (root / "live" / "scenetune.json").is_file()
                _poll(client, url, observation, "live")
                observation.addresses |= _listening_addresses({pid for pid, _ in descendants({sweep.pid})})
                if page is not None and started and page.url == "about:blank":
                    page.goto(url + "/experiment/live")  # opened while the first trial has no result yet
                time.sleep(POLL_S)
            output = sweep.stdout.read()
            assert sweep.returncode == 0, output
            _poll(client, url, observation, "live")
            if page is not None:
                page.wait_for_function(
                    "() => document.querySelectorAll('[data-role=trials] tbody tr').length === 2"
                )
                page.wait_for_function(
                    "() => !document.querySelector('[data-role=trials]').textContent.includes('running')"
                )
                observation.rows_shown = page.evaluate(
                    "() => document.querySelectorAll('[data-role=trials] tbody tr').length"
                )
                observation.console_errors = list(page.console_errors)
        finally:
            if sweep.poll() is None:
                sweep.kill()
            if page_context is not None:
                page_context.__exit__(None, None, None)
    return observation


def test_every_answer_during_a_sweep_is_200_and_strict_json(observed_sweep: Observation) -> None:
    experiment_answers = [a for a in observed_sweep.answers if a[0] != "/api/home"]
    assert len(experiment_answers) >= 10
    failures = [
        (path, code)
        for path, code, _ in observed_sweep.answers
        if code != 200 and not (path != "/api/home" and code == 404)
    ]
    assert failures == []
    for _, code, body in observed_sweep.answers:
        if code == 200:
            strict_json(body)
    # The experiment answered 404 only before its folder existed, then 200 to the end.
    codes = [code for _, code, _ in experiment_answers]
    first_ok = codes.index(200)
    assert set(codes[first_ok:]) == {200}


def test_the_polls_saw_trials_without_results_then_every_trial_finished(observed_sweep: Observation) -> None:
    assert observed_sweep.trials_without_result > 0
    assert any(statuses & {"running", "pending"} for statuses in observed_sweep.statuses)
    assert observed_sweep.statuses[-1] <= {"completed", "stopped_early"}


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed (.ci/run installs it)")
def test_the_page_opened_at_the_start_follows_the_sweep_without_errors(observed_sweep: Observation) -> None:
    assert observed_sweep.rows_shown == 2
    assert observed_sweep.console_errors == []


def test_a_local_sweeps_ray_services_listen_on_loopback_only(observed_sweep: Observation) -> None:
    assert observed_sweep.addresses, "no listening socket of the sweep's Ray services was seen"
    assert observed_sweep.addresses <= LOOPBACK


def test_a_sweep_killed_in_a_trials_first_epoch(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """kill -9 of the driver while a trial has no result: the Ray processes it started end, the trial
    reads `interrupted`, and the dashboard, the table and the report all show it."""
    root = tmp_path / "results"
    experiment = root / "killed"
    sweep = subprocess.Popen(
        _scenetune(
            "sweep",
            "mlp",
            "--samples",
            "2",
            "--epochs",
            "3",
            *SLOW_TRIALS,
            "--storage",
            str(root),
            "--name",
            "killed",
        ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        while not any(not trial.history for trial in load_trials(experiment)):
            assert sweep.poll() is None, "the sweep ended before a trial started"
            time.sleep(0.05)
        ray_processes = descendants({sweep.pid})
    finally:
        if sweep.poll() is None:
            os.kill(sweep.pid, signal.SIGKILL)  # the driver alone, as `kill -9 PID` does
        sweep.wait()
    assert len(ray_processes) >= 3  # GCS, raylet, a trial worker at least
    for _ in range(600):  # the watchdog stops what the killed driver left; give it up to a minute
        if not alive(ray_processes):
            break
        time.sleep(0.1)
    assert alive(ray_processes) == set(), "Ray processes outlived the killed driver"

    trials = load_experiment(experiment).trials
    assert "interrupted" in set(trials["status"]) and "running" not in set(trials["status"])
    assert trials.loc[trials["status"] == "interrupted", "val_acc"].isna().any()
    assert main(["table", str(experiment)]) == 0
    assert "interrupted" in capsys.readouterr().out
    with dashboard_server(root) as url:
        payload = strict_json(httpx.get(url + "/api/experiment/killed").text)
        assert "interrupted" in {t["status"] for t in payload["trials"]}
        assert strict_json(httpx.get(url + "/api/home").text)["experiments"][0]["interrupted"] >= 1
        if CHROMIUM.exists():
            with chromium_page() as page:
                page.goto(url + "/experiment/killed")
                page.wait_for_selector("[data-role=trials] tbody tr")
                assert "interrupted" in page.inner_text("[data-role=trials]")
                assert page.console_errors == []
    report = tmp_path / "report.html"
    assert main(["report", str(experiment), "-o", str(report)]) == 0
    data = report.read_text().split('id="report-data">', 1)[1].split("</script>", 1)[0]
    assert "NaN" not in data and "Infinity" not in data  # strict JSON, as browsers parse it
    if CHROMIUM.exists():
        with chromium_page() as page:
            page.goto(report.as_uri())
            page.wait_for_selector("[data-role=trials] tbody tr")
            assert "interrupted" in page.inner_text("[data-role=trials]")
            assert page.console_errors == []

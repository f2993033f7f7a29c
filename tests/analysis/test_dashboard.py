"""The dashboard in a real browser (Debian's Chromium driven by Playwright) against a real server."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from analysis import dashboard
from analysis.dashboard import ImportanceCache, importance_signature
from analysis.payloads import PayloadCache, experiment_payload, home_payload
from scenetune.cli import main
from scenetune.environment import torch_cpu_capability
from scenetune.experiment import DRIVER_FILE
from scenetune.replication_steps import STATE_FILE
from tests.conftest import CHROMIUM, CHROMIUM_FLAGS, dashboard_server, make_image_folder, needs_chromium

pytestmark = pytest.mark.integration  # real sweeps, servers and browsers

HOSTILE_CLASS = "<img src=x onerror=alert(1)>"
SECRET = "TOP-SECRET-OUTSIDE-THE-ROOT"


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory, ray_session) -> Path:
    base = tmp_path_factory.mktemp("dashboard")
    root = base / "results"
    tiny = ["--set", "image_size=8", "--set", "width=32", "--storage", str(root)]
    assert (
        main(
            [
                "sweep",
                "mlp",
                "--samples",
                "4",
                "--epochs",
                "2",
                "--max-concurrent",
                "1",
                *tiny,
                "--name",
                "search",
            ]
        )
        == 0
    )
    # A study's comparison, as `scenetune study` writes it (study.json marks the folder, study.csv the rows).
    study = root / "study-x"
    study.mkdir(parents=True)
    (study / "study.json").write_text(json.dumps({"request": {}, "steps": {}}))
    (study / "study.csv").write_text(
        "approach,test_acc,test_acc_low,test_acc_high\nend-to-end MLP,0.60,0.55,0.66\npatch MLP,0.77,0.72,0.81\n"
    )
    # A replication that has not run a step yet: its tables hold the published values only.
    replication = root / "replication-x"
    replication.mkdir()
    state = {"request": {"data": "digits", "protocol": "study", "carry": "study"}, "steps": {}, "pins": {}}
    (replication / STATE_FILE).write_text(json.dumps(state))
    folder = make_image_folder(base / "hostile", {HOSTILE_CLASS: (200, 0, 0), "plain": (0, 0, 200)})
    assert (
        main(
            [
                "sweep",
                "mlp",
                "--data",
                str(folder),
                "--val",
                "test",
                "--samples",
                "1",
                "--epochs",
                "1",
                *tiny,
                "--name",
                "hostile",
            ]
        )
        == 0
    )
    outside = base / "outside" / "stolen"
    outside.mkdir(parents=True)
    (outside / "scenetune.json").write_text(json.dumps({"task": SECRET}))
    (root / "link").symlink_to(outside, target_is_directory=True)
    return root


@pytest.fixture(scope="module")
def server(results: Path):
    with dashboard_server(results) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        yield launched
        launched.close()


@pytest.fixture()
def page(browser, tmp_path: Path):
    context = browser.new_context(viewport={"width": 1400, "height": 1600})
    opened = context.new_page()
    opened.console_errors = []
    opened.dialogs = []
    opened.on(
        "console",
        lambda message: opened.console_errors.append(message.text) if message.type == "error" else None,
    )
    opened.on("pageerror", lambda error: opened.console_errors.append(str(error)))
    opened.on("dialog", lambda dialog: (opened.dialogs.append(dialog.message), dialog.dismiss()))
    yield opened
    shot = tmp_path / "page.png"
    opened.screenshot(path=str(shot), full_page=True)
    print(f"screenshot: {shot}")
    context.close()


def _trace_counts(page) -> dict[str, int]:
    return page.evaluate(
        "() => Object.fromEntries([...document.querySelectorAll('.js-plotly-plot')].map(n => [n.dataset.role, n.data.length]))"
    )


@needs_chromium
def test_home_lists_experiments_and_prints_no_errors(server: str, page, capsys) -> None:
    page.goto(server + "/")
    page.wait_for_selector("[data-experiment='search']")
    listed = page.eval_on_selector_all("tr[data-experiment]", "rows => rows.map(r => r.dataset.experiment)")
    assert sorted(listed) == ["hostile", "search"]
    # The best trial's test accuracy with its interval over the test images.
    header = page.eval_on_selector_all("[data-role=experiments] th", "cells => cells.map(c => c.textContent)")
    row = page.eval_on_selector_all(
        "tr[data-experiment='search'] td", "cells => cells.map(c => c.textContent)"
    )
    low, high = (float(v) for v in row[header.index("test 95% CI")].split("–"))
    assert low <= float(row[header.index("test_acc")]) <= high
    page.wait_for_selector(
        "[data-role=study-accuracy] .js-plotly-plot, [data-role=study-accuracy].js-plotly-plot"
    )
    bars = page.evaluate("() => document.querySelector('[data-role=study-accuracy]').data[0]")
    assert bars["x"] == [0.60, 0.77] and bars["y"] == ["end-to-end MLP", "patch MLP"]
    assert [round(v, 2) for v in bars["error_x"]["arrayminus"]] == [
        0.05,
        0.05,
    ]  # down to the interval's low end
    assert [round(v, 2) for v in bars["error_x"]["array"]] == [0.06, 0.04]
    assert page.console_errors == []


@needs_chromium
def test_a_replication_has_its_page_with_the_studys_tables_and_conclusions(server: str, page) -> None:
    page.goto(server + "/")
    page.wait_for_selector("[data-replication='replication-x'] h3 a")
    page.click("[data-replication='replication-x'] h3 a")
    page.wait_for_selector("[data-role=replication] [data-table=depth]")
    assert page.url.endswith("/replication/replication-x")
    marks = page.eval_on_selector_all("[data-role=conclusions] li", "items => items.map(i => i.dataset.mark)")
    assert marks == ["not measured"] * 12  # no step has run
    depth = page.inner_text("[data-role=replication] [data-table=depth]")
    assert "hidLayers_4" in depth and "0.6762" in depth
    assert page.console_errors == []


@needs_chromium
def test_experiment_page_charts_sorting_and_escaping(server: str, page) -> None:
    page.goto(server + "/experiment/search")
    page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot').length >= 5")
    counts = _trace_counts(page)
    assert counts["chart-accuracy"] == counts["chart-loss"] == 2 * 4  # train and val per trial
    assert counts["chart-parallel"] == 1
    assert all(counts[role] == 1 for role in counts if role.startswith("chart-param-"))
    column = "() => [...document.querySelectorAll('[data-role=trials] tbody tr')].map(r => parseFloat(r.children[3].textContent))"
    descending = page.evaluate(column)
    assert descending == sorted(descending, reverse=True)
    page.click("[data-role=trials] th[data-column=val_acc]")
    assert page.evaluate(column) == sorted(descending)
    assert "scenetune sweep mlp" in page.inner_text("[data-role=rerun]")
    assert "--val-fraction 0.15" in page.inner_text("[data-role=rerun]")  # the same split as the sweep
    environment = page.inner_text("[data-role=environment]")
    assert f"torch's CPU kernels: {torch_cpu_capability()}" in environment and "Python " in environment
    assert page.evaluate("() => document.querySelector('[data-role=chart-loss]').layout.yaxis.type") == "log"
    assert page.console_errors == []
    page.goto(server + "/experiment/hostile")
    page.wait_for_selector("[data-role=classes]")
    assert HOSTILE_CLASS in page.inner_text("[data-role=classes]")
    assert page.dialogs == [] and page.query_selector("[data-role=classes] img") is None


@needs_chromium
def test_new_results_appear_live_without_reload(server: str, page, results: Path) -> None:
    page.goto(server + "/experiment/search")
    page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot').length >= 5")
    page.evaluate("() => { window.notReloaded = true; }")
    first = page.query_selector("[data-role=trials] tbody input[type=checkbox]")
    trial_id = first.get_attribute("data-trial")
    first.check()
    result = next(p for p in results.glob("search/*/result.json") if trial_id in p.parent.name)
    last = json.loads(result.read_text().splitlines()[-1])
    with result.open("a") as handle:
        handle.write(
            json.dumps(
                {**last, "epoch": last["epoch"] + 1, "training_iteration": last["training_iteration"] + 1}
            )
            + "\n"
        )
    points = f"() => document.querySelector('[data-role=chart-accuracy]').data.find(t => t.name === '{trial_id} val_acc').x.length"
    page.wait_for_function(f"() => ({points})() === {last['epoch'] + 1}", timeout=15000)
    assert page.evaluate("() => window.notReloaded") is True
    assert page.is_checked(f"[data-role=trials] input[data-trial='{trial_id}']")
    assert page.console_errors == []


def test_a_folder_payload_is_computed_again_only_when_a_file_under_it_changes(tmp_path: Path) -> None:
    result = tmp_path / "experiment" / "trial_1" / "result.json"
    result.parent.mkdir(parents=True)
    result.write_text('{"epoch": 1}\n')
    cache, computed = PayloadCache(), []

    def compute() -> int:
        computed.append(True)
        return len(computed)

    assert cache.get("experiment", tmp_path / "experiment", compute) == 1
    assert cache.get("experiment", tmp_path / "experiment", compute) == 1  # nothing written since
    result.write_text('{"epoch": 1}\n{"epoch": 2}\n')  # a trial reports an epoch
    assert cache.get("experiment", tmp_path / "experiment", compute) == 2
    (tmp_path / "experiment" / "trial_2").mkdir()
    (tmp_path / "experiment" / "trial_2" / "params.json").write_text("{}")  # a trial starts
    assert cache.get("experiment", tmp_path / "experiment", compute) == 3
    assert cache.get("replication", tmp_path / "experiment", compute) == 4  # each kind has its own entry


def test_a_folder_payload_is_computed_again_when_its_sweep_driver_dies(tmp_path: Path) -> None:
    # A driver killed with -9 writes nothing more, but its running trials now read `interrupted`.
    experiment = tmp_path / "experiment"
    experiment.mkdir()
    driver = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    (experiment / DRIVER_FILE).write_text(
        json.dumps(
            {"pid": driver.pid, "host": socket.gethostname(), "started": time.time(), "updated": time.time()}
        )
    )
    cache, computed = PayloadCache(), []

    def compute() -> int:
        computed.append(True)
        return len(computed)

    assert cache.get("experiment", experiment, compute) == cache.get("experiment", experiment, compute) == 1
    driver.kill()
    driver.wait()
    assert cache.get("experiment", experiment, compute) == 2


def test_the_cached_home_answer_follows_a_new_result(results: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    shutil.copytree(results / "search", root / "search")
    cache = PayloadCache()
    assert home_payload(root, cache) == home_payload(root)
    result = next((root / "search").glob("*/result.json"))
    last = json.loads(result.read_text().splitlines()[-1])
    with result.open("a") as handle:
        handle.write(
            json.dumps({**last, "epoch": last["epoch"] + 1, "val_acc": 1.0, "best_val_acc": 1.0}) + "\n"
        )
    shown = home_payload(root, cache)
    assert shown == home_payload(root)
    assert shown["experiments"][0]["best_val_acc"] == 1.0

    # The experiment page shares the cache with the home page, under an entry of its own.
    def without_importance(payload: dict) -> dict:
        return {key: value for key, value in payload.items() if not key.startswith("importance")}

    page = ImportanceCache().payload(root, root / "search", cache)
    assert without_importance(page) == without_importance(experiment_payload(root, root / "search"))
    assert home_payload(root, cache) == shown


def test_importance_is_computed_again_in_the_background_at_most_once_per_interval(
    results: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "root"
    experiment = shutil.copytree(results / "search", root / "search")
    cache = ImportanceCache()
    signature = importance_signature(experiment_payload(root, experiment, with_importance=False))
    computing, compute = threading.Event(), dashboard.importance_payload
    monkeypatch.setattr(dashboard, "importance_payload", lambda e: (computing.wait(), compute(e))[1])
    assert cache.payload(root, experiment)["importance"] is None  # no poll waits for it: it is computed aside
    computing.set()
    cache.refresh(experiment, signature).result()
    first = cache.payload(root, experiment)
    assert first["importance"] is not None and first["importance_trials"] == 4
    result = next(experiment.glob("*/result.json"))
    last = json.loads(result.read_text().splitlines()[-1])
    with result.open("a") as handle:  # a trial reports a better epoch
        handle.write(
            json.dumps({**last, "epoch": last["epoch"] + 1, "val_acc": 1.0, "best_val_acc": 1.0}) + "\n"
        )
    second = cache.payload(root, experiment)
    assert max(trial["val_acc"] for trial in second["trials"]) == 1.0  # the trials are read afresh
    assert second["importance"] == first["importance"]  # importance is not, within its interval
    signature = importance_signature(experiment_payload(root, experiment, with_importance=False))
    assert cache.refresh(experiment, signature) is None
    monkeypatch.setattr(dashboard, "IMPORTANCE_REFRESH_S", 0.0)  # the interval has passed
    computed = cache.refresh(experiment, signature).result()
    assert computed.signature == signature and computed.trials == 4
    third = cache.payload(root, experiment)
    assert third["importance"] == computed.value and cache.refresh(experiment, signature) is None


@pytest.mark.parametrize(
    "path",
    [
        "/experiment/../../etc/passwd",
        "/api/experiment/..%2F..%2F..%2Fetc%2Fpasswd",
        "/api/experiment/%2e%2e/%2e%2e/etc/passwd",
        "/api/experiment//etc/passwd",
        "/api/experiment/link",
        "/experiment/link",
        "/api/experiment/search/../../outside/stolen",
    ],
)
def test_paths_outside_the_root_are_404(server: str, path: str) -> None:
    with httpx.Client() as client:
        response = client.send(client.build_request("GET", server + path))  # the raw path, not normalised
    assert response.status_code == 404
    assert SECRET not in response.text and "root:" not in response.text


def test_dashboard_never_writes_under_the_root(server: str, results: Path) -> None:
    before = _snapshot(results)
    for path in ("/", "/api/home", "/experiment/search", "/api/experiment/search", "/api/experiment/hostile"):
        assert httpx.get(server + path).status_code == 200
    assert _snapshot(results) == before


@needs_chromium
def test_report_opens_offline_with_the_same_numbers(
    results: Path, browser, tmp_path: Path, server: str
) -> None:
    report = tmp_path / "report.html"
    assert main(["report", str(results / "search"), "-o", str(report)]) == 0
    best = httpx.get(server + "/api/experiment/search").json()["best"]
    context = browser.new_context(offline=True)
    page = context.new_page()
    requests: list[str] = []
    errors: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(report.as_uri())
    page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot').length >= 5")
    text = page.inner_text("body")
    shown = page.evaluate(f"() => ({best['val_acc']}).toPrecision(4)")
    assert f"Best trial {best['trial_id']}: val_acc {shown}" in text
    low, high = best["test_95ci"]  # the interval over the test images, from the checkpoint's predictions
    assert low <= best["test_acc"] <= high and "95% CI" in text
    assert all(url.startswith("file:") or url.startswith("data:") for url in requests) and errors == []
    page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
    print(f"screenshot: {tmp_path / 'report.png'}")
    context.close()


@needs_chromium
def test_a_report_of_one_study_folder_shows_its_comparison(results: Path, browser, tmp_path: Path) -> None:
    report = tmp_path / "study.html"
    assert main(["report", str(results / "study-x"), "-o", str(report)]) == 0
    context = browser.new_context(offline=True)
    page = context.new_page()
    page.goto(report.as_uri())
    page.wait_for_selector("section.study h3")
    assert page.inner_text("section.study h3") == "study-x"
    assert "patch MLP" in page.inner_text("section.study") and "No studies yet." not in page.inner_text(
        "body"
    )
    context.close()

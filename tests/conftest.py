"""Shared fixtures: an isolated dataset cache, tiny image folders, and one real sweep reused by many tests."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[1]
MIT_SPLIT = REPO_ROOT.parent / "shared" / "datasets" / "MIT_split"


@pytest.fixture(autouse=True, scope="session")
def isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cache = tmp_path_factory.mktemp("scenetune-cache")
    os.environ["SCENETUNE_CACHE"] = str(cache)
    return cache


def write_image(path: Path, color: tuple[int, int, int], size: int = 12, mode: str = "RGB") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGB", (size, size), color)
    if mode != "RGB":
        image = image.convert(mode)
    image.save(path)
    return path


def make_image_folder(
    root: Path, classes: dict[str, tuple[int, int, int]], per_class: int = 4, test_per_class: int = 2
) -> Path:
    """root/{train,test}/<class>/*.png, each class a solid colour with a little noise."""
    rng = np.random.default_rng(0)
    for name, color in classes.items():
        for split, count in (("train", per_class), ("test", test_per_class)):
            for index in range(count):
                pixels = np.clip(np.array(color) + rng.integers(-20, 20, size=(12, 12, 3)), 0, 255).astype(
                    np.uint8
                )
                path = root / split / name / f"{index}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(pixels).save(path)
    return root


@pytest.fixture()
def image_folder(tmp_path: Path) -> Path:
    return make_image_folder(
        tmp_path / "scenes", {"coast": (30, 80, 200), "forest": (20, 140, 30), "city street": (120, 120, 120)}
    )


@pytest.fixture(scope="session")
def mit_split() -> Path:
    if not (MIT_SPLIT / "train").is_dir():
        pytest.skip(f"the MIT_split dataset is not at {MIT_SPLIT}")
    return MIT_SPLIT


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray instance, started as a sweep starts it, for every in-process command of the session:
    a command leaves a Ray instance it did not start running, so each saves starting and stopping its own."""
    import ray

    from scenetune.sweep import start_ray

    start_ray()
    yield
    ray.shutdown()


def copy_tree(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
]
needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="Debian's chromium is not installed (.ci/run installs it)"
)


def strict_json(text: str):
    """Parse JSON as browsers do: NaN and Infinity are not JSON, so they fail here too."""

    def refuse(constant: str):
        raise ValueError(f"{constant} is not valid JSON")

    return json.loads(text, parse_constant=refuse)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def dashboard_server(root: Path):
    """`scenetune dashboard ROOT` in its own process; yields its URL once it answers."""
    import httpx

    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "scenetune", "dashboard", str(root), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        while True:
            try:
                if httpx.get(url + "/api/home").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, f"the dashboard exited: {process.stdout.read()}"
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait()


@contextlib.contextmanager
def chromium_page():
    """A page of Debian's Chromium that records console errors, uncaught exceptions and failed requests."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        page = browser.new_context(viewport={"width": 1400, "height": 1600}).new_page()
        page.console_errors = []
        page.on(
            "console",
            lambda message: page.console_errors.append(message.text) if message.type == "error" else None,
        )
        page.on("pageerror", lambda error: page.console_errors.append(str(error)))
        page.on(
            "response",
            lambda response: (
                page.console_errors.append(f"{response.status} {response.url}")
                if response.status >= 400
                else None
            ),
        )
        try:
            yield page
        finally:
            browser.close()


# Tests that use these fixtures start Ray or read the scene dataset: integration tests.
INTEGRATION_FIXTURES = frozenset({"ray_session", "mit_split", "two_node_cluster"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """`-m "not integration"` runs the fast unit tests alone (no Ray, no server, no browser)."""
    for item in items:
        if INTEGRATION_FIXTURES & set(item.fixturenames):
            item.add_marker(pytest.mark.integration)

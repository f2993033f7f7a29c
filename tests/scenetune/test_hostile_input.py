"""Input that a careless or hostile user gives: every case ends in one sentence and exit 2 before any
work, or is served safely; nothing already written is lost or overwritten."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path
from urllib.parse import quote

import httpx
import numpy as np
import pytest

from scenetune.cli import main
from scenetune.data import load_dataset
from scenetune.experiment import load_trials
from tests.conftest import (
    chromium_page,
    dashboard_server,
    make_image_folder,
    needs_chromium,
    strict_json,
)

SCRIPT_COMMENT_CLASS = "<!--<script>"
ODD_NAME = "odd #?% name"
SECRET = "TOP-SECRET-OUTSIDE-THE-ROOT"
TINY = ["--set", "image_size=8", "--set", "width=32"]


def _fails_with_one_sentence(arguments: list[str], capsys: pytest.CaptureFixture) -> str:
    assert main(arguments) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("scenetune: error: ") and "\n" not in err and "Traceback" not in err, err
    return err


def _bomb_png(path: Path) -> Path:
    """A PNG whose header claims 40000x40000 pixels: decoding it would take gigabytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 40000, 40000, 8, 2, 0, 0, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b""))
        + chunk(b"IEND", b"")
    )
    return path


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory, ray_session) -> Path:
    """One tiny experiment with an odd name, trained on a class whose name opens a script comment."""
    base = tmp_path_factory.mktemp("hostile")
    root = base / "results"
    folder = make_image_folder(base / "scenes", {SCRIPT_COMMENT_CLASS: (200, 0, 0), "plain": (0, 0, 200)})
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
                *TINY,
                "--storage",
                str(root),
                "--name",
                ODD_NAME,
            ]
        )
        == 0
    )
    return root


@pytest.fixture(scope="module")
def server(results: Path):
    with dashboard_server(results) as url:
        yield url


# ---------- images and datasets ----------


def test_a_decompression_bomb_is_a_bad_image_everywhere(
    tmp_path: Path, results: Path, capsys: pytest.CaptureFixture
) -> None:
    folder = make_image_folder(tmp_path / "scenes", {"a": (10, 10, 10), "b": (240, 240, 240)})
    bomb = _bomb_png(folder / "train" / "a" / "bomb.png")
    err = _fails_with_one_sentence(
        ["sweep", "mlp", "--data", str(folder), "--storage", str(tmp_path / "r")], capsys
    )
    assert "1 image(s) cannot be read" in err and "bomb.png" in err
    dataset = load_dataset(str(folder), [8], skip_bad_images=True)
    assert dataset.skipped_images == [str(bomb)] and len(dataset.train[8]) == 8
    assert "bomb.png" in capsys.readouterr().err
    (trial,) = load_trials(results / ODD_NAME)
    err = _fails_with_one_sentence(
        [
            "layer-output",
            str(trial.checkpoints()[-1]),
            str(bomb),
            "--layer",
            "second",
            "--out",
            str(tmp_path / "out.npy"),
        ],
        capsys,
    )
    assert str(bomb) in err and not (tmp_path / "out.npy").exists()
    assert not (tmp_path / "r").exists()


def test_a_class_with_one_training_image_is_named(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    folder = make_image_folder(tmp_path / "scenes", {"many": (10, 10, 10), "lonely": (240, 240, 240)})
    for extra in sorted((folder / "train" / "lonely").iterdir())[1:]:
        extra.unlink()
    err = _fails_with_one_sentence(
        ["sweep", "mlp", "--data", str(folder), "--storage", str(tmp_path / "r")], capsys
    )
    assert "'lonely' has 1 training image(s)" in err and "--val test" in err
    assert not (tmp_path / "r").exists()


def test_a_class_whose_images_are_all_bad_stops_even_when_skipping(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    folder = make_image_folder(tmp_path / "scenes", {"good": (10, 10, 10), "broken": (240, 240, 240)})
    for image in (folder / "train" / "broken").iterdir():
        image.write_bytes(b"not an image")
    err = _fails_with_one_sentence(
        ["sweep", "mlp", "--data", str(folder), "--skip-bad-images", "--storage", str(tmp_path / "r")], capsys
    )
    assert str(folder / "train" / "broken") in err and "no readable image" in err


# ---------- arguments ----------


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        (["--set", "depth=abc"], "--set depth=abc: depth takes an integer"),
        (["--set", "lr=fast"], "--set lr=fast: lr takes a number"),
        (["--set", "batch_norm=3"], "--set batch_norm=3: batch_norm takes true or false"),
        (["--set", "epochs=0"], "--set epochs=0: a trial needs at least 1 epoch"),
        (["--name", "../x"], "--name '../x' must be one folder name"),
        (["--name", "a/b"], "--name 'a/b' must be one folder name"),
        (["--name", ".."], "--name '..' must be one folder name"),
    ],
)
def test_bad_sweep_arguments(
    arguments: list[str], expected: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    storage = tmp_path / "storage" / "results"
    assert expected in _fails_with_one_sentence(
        ["sweep", "mlp", *arguments, "--storage", str(storage)], capsys
    )
    assert not (tmp_path / "storage").exists() and not (tmp_path / "x").exists()


def test_more_cpus_per_trial_than_a_node_has_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture, ray_session
) -> None:
    import os

    err = _fails_with_one_sentence(
        ["sweep", "mlp", "--cpus-per-trial", "100", *TINY, "--storage", str(tmp_path)], capsys
    )
    assert f"--cpus-per-trial 100 is more than the largest node's {os.cpu_count()} CPU(s)" in err
    assert list(tmp_path.iterdir()) == []


def test_output_files_are_never_overwritten_and_their_folder_must_exist(
    tmp_path: Path, results: Path, capsys: pytest.CaptureFixture
) -> None:
    (trial,) = load_trials(results / ODD_NAME)
    image = _any_image(results)
    keep = tmp_path / "keep.npy"
    keep.write_bytes(b"precious")
    common = ["layer-output", str(trial.checkpoints()[-1]), str(image), "--layer", "second"]
    assert str(keep) in _fails_with_one_sentence([*common, "--out", str(tmp_path / "keep")], capsys)
    assert keep.read_bytes() == b"precious"
    assert "folder" in _fails_with_one_sentence(
        [*common, "--out", str(tmp_path / "missing" / "x.npy")], capsys
    )
    assert "folder" in _fails_with_one_sentence(
        ["report", str(results / ODD_NAME), "-o", str(tmp_path / "missing" / "r.html")], capsys
    )
    assert main([*common, "--out", str(tmp_path / "fresh")]) == 0
    assert np.load(tmp_path / "fresh.npy").shape == (1, 32)


def _any_image(results: Path) -> Path:
    record = json.loads((results / ODD_NAME / "scenetune.json").read_text())
    return next(Path(record["data"]["source"]).glob("test/plain/*.png"))


@pytest.mark.integration
def test_two_sweeps_started_at_once_with_one_name(tmp_path: Path) -> None:
    command = [
        sys.executable,
        "-m",
        "scenetune",
        "sweep",
        "mlp",
        "--samples",
        "2",
        "--epochs",
        "1",
        *TINY,
        "--storage",
        str(tmp_path),
        "--name",
        "twice",
    ]
    first, second = (
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)
    )
    outcomes = sorted(((p.wait(), p.stderr.read()) for p in (first, second)), key=lambda outcome: outcome[0])
    assert [code for code, _ in outcomes] == [0, 2], outcomes
    assert "already exists" in outcomes[1][1]
    assert len(load_trials(tmp_path / "twice")) == 2


# ---------- the dashboard and the report ----------


@pytest.mark.parametrize(
    "path",
    [
        "/api/experiment/%00",
        "/api/experiment/a%00b",
        "/experiment/%00",
        "/api/experiment/" + "x" * 300,
        "/experiment/" + "x" * 300,
        "/api/experiment/" + "x/" * 200,
    ],
)
def test_odd_paths_are_404(server: str, path: str) -> None:
    with httpx.Client() as client:
        response = client.send(client.build_request("GET", server + path))
    assert response.status_code == 404


def test_a_foreign_host_header_is_refused(server: str) -> None:
    assert httpx.get(server + "/api/home", headers={"Host": "evil.example"}).status_code == 400
    assert httpx.get(server + "/api/home", headers={"Host": "attacker.test:8050"}).status_code == 400
    assert (
        httpx.get(server + "/api/home", headers={"Host": f"localhost:{server.rsplit(':', 1)[1]}"}).status_code
        == 200
    )


def test_a_trial_folder_linked_outside_the_root_is_not_served(
    server: str, results: Path, tmp_path: Path
) -> None:
    linked = results / "linked"
    shutil.copytree(results / ODD_NAME, linked, symlinks=True)
    outside = tmp_path / "outside" / "train_mlp_00099_stolen"
    outside.mkdir(parents=True)
    (outside / "params.json").write_text(json.dumps({"secret": SECRET}))
    (outside / "result.json").write_text(json.dumps({"trial_id": SECRET, "epoch": 1, "val_acc": 1.0}) + "\n")
    (linked / outside.name).symlink_to(outside, target_is_directory=True)
    answer = httpx.get(server + "/api/experiment/linked")
    assert answer.status_code == 200 and SECRET not in answer.text
    assert len(strict_json(answer.text)["trials"]) == 1


def test_odd_experiment_names_work_through_the_api(server: str) -> None:
    home = strict_json(httpx.get(server + "/api/home").text)
    assert ODD_NAME in [e["id"] for e in home["experiments"]]
    answer = httpx.get(server + "/api/experiment/" + quote(ODD_NAME))
    assert answer.status_code == 200 and strict_json(answer.text)["summary"]["classes"] == sorted(
        [SCRIPT_COMMENT_CLASS, "plain"]
    )


@needs_chromium
def test_odd_names_link_and_poll_in_the_browser(server: str) -> None:
    with chromium_page() as page:
        page.goto(server + "/")
        page.click(f"tr[data-experiment='{ODD_NAME}'] a")
        page.wait_for_selector("[data-role=trials] tbody tr")
        page.wait_for_timeout(2500)  # at least one more poll of the live data
        assert SCRIPT_COMMENT_CLASS in page.inner_text("[data-role=classes]")
        assert page.evaluate("() => document.body.dataset.experiment") == ODD_NAME
        assert page.console_errors == []


@needs_chromium
def test_a_report_with_a_script_comment_in_a_name_renders(results: Path, tmp_path: Path) -> None:
    report = tmp_path / "report.html"
    assert main(["report", str(results / ODD_NAME), "-o", str(report)]) == 0
    data = report.read_text().split('id="report-data">', 1)[1].split("</script>", 1)[0]
    assert "<" not in data
    with chromium_page() as page:
        page.goto(report.as_uri())
        page.wait_for_function(
            "() => document.querySelectorAll('.js-plotly-plot').length >= 2"
        )  # accuracy and loss curves
        assert SCRIPT_COMMENT_CLASS in page.inner_text("[data-role=classes]")
        assert ODD_NAME in page.inner_text("body")
        assert page.console_errors == []

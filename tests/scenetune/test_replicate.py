"""`scenetune replicate`: the study's chain of one-factor sweeps, killed mid-chain and resumed, and
its report beside the published tables."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from analysis.dashboard import build_report
from analysis.payloads import home_payload
from analysis.replication import published_table
from scenetune.cli import main
from scenetune.environment import current_environment, describe
from scenetune.experiment import best_trial, load_trials
from scenetune.replication_steps import STATE_FILE, STEPS
from tests.processes import kill_once


def _state(directory: Path) -> dict:
    try:
        return json.loads((directory / STATE_FILE).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {"steps": {}}


def _results(experiment: Path) -> dict[str, str]:
    return {p.parent.name: p.read_text() for p in experiment.glob("*/result.json")}


@pytest.mark.integration
def test_the_chain_runs_every_step_resumes_after_a_kill_and_reports_every_table(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "scenetune", "replicate", "--quick", "--storage", str(tmp_path)]
    directory = tmp_path / "r"
    kill_once(  # in its third step, once that step has a result
        [*command, "--name", "r"],
        lambda: (
            _state(directory)["steps"].get("batch_size") == "running"
            and bool(_results(directory / "batch_size"))
        ),
        "its third step ran",
    )
    finished = {step: _results(directory / step) for step in ("lr", "image_size")}
    resumed = subprocess.run([*command, "--name", "r", "--resume"], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    state = _state(directory)
    assert state["steps"] == {step.name: "done" for step in STEPS}
    for step, results in finished.items():  # finished steps were not run again
        assert _results(directory / step) == results
    assert len(load_trials(directory / "batch_size")) == 8  # the step it was in went on, no trial twice
    # Each step starts from the best of the steps before it.
    best = {step: best_trial(directory / step).config for step in ("lr", "image_size", "batch_size", "depth")}
    assert state["pins"]["image_size"]["lr"] == best["lr"]["lr"]
    assert state["pins"]["depth"]["batch_size"] == best["batch_size"]["batch_size"]
    assert state["pins"]["regularization"]["depth"] == best["depth"]["depth"]  # model 1.4: the best depth
    # The study's hand-made choices are followed: model 2 (4096 first, halving) for the initializers.
    assert state["pins"]["initializer"]["batch_norm"] is True
    # The report: every table of the study with every row, ours beside the published value.
    report = pd.read_csv(directory / "replication.csv")
    published = published_table()
    assert list(zip(report["table"], report["row"], report["metric"])) == list(
        zip(published["table"], published["row"], published["metric"])
    )
    assert report["published"].equals(published["published"])
    for table in (
        "lr",
        "depth",
        "regularization",
        "width",
        "initializer",
        "patch_size",
        "aggregation",
        "codebook",
    ):
        assert report[report["table"] == table]["measured"].notna().all(), table
    numbers = report.dropna(subset=["measured", "published"])
    assert (numbers["difference"] - (numbers["measured"] - numbers["published"])).abs().max() < 1e-9
    saved = json.loads((directory / "replication.json").read_text())
    assert len(saved["conclusions"]) == 12
    assert {c["mark"] for c in saved["conclusions"]} <= {"agrees", "disagrees", "cannot tell", "not measured"}
    # The rankings are tested on the trials' per-image predictions over the same test images.
    assert sum("McNemar p = " in c["evidence"] for c in saved["conclusions"]) >= 5
    markdown = (directory / "replication.md").read_text()
    assert "## The study's conclusions" in markdown and "## Table: codebook" in markdown
    assert f"## Environment\n\n{describe(current_environment())}\n" in markdown  # every step ran here
    assert (directory / "figures" / "depth" / "learning_curves.png").is_file()
    assert (directory / "figures" / "depth" / "accuracy_vs_depth.png").is_file()
    # The dashboard and the report show it.
    shown = home_payload(tmp_path)["replications"]
    assert [r["id"] for r in shown] == ["r"] and len(shown[0]["conclusions"]) == 12
    assert '"replications": [{"id": "r"' in build_report([tmp_path])


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--protocol", "loose"], "--protocol must be one of study, honest, got 'loose'"),
        (["--carry", "worst"], "--carry must be one of study, best, got 'worst'"),
        (["--epochs", "0"], "--epochs must be at least 1, got 0"),
        (["--name", "nothing", "--resume"], "is not a scenetune replication"),
    ],
)
def test_bad_requests_stop_before_anything_runs(
    arguments: list[str], message: str, tmp_path: Path, capsys
) -> None:
    assert main(["replicate", "--storage", str(tmp_path), *arguments]) == 2
    assert message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_a_study_is_not_a_replication_to_resume(tmp_path: Path, capsys) -> None:
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "study.json").write_text("{}")
    assert main(["replicate", "--storage", str(tmp_path), "--name", "s", "--resume"]) == 2
    assert "is not a scenetune replication" in capsys.readouterr().err


def test_data_without_a_train_folder_is_refused(tmp_path: Path, capsys) -> None:
    (tmp_path / "scenes" / "test" / "coast").mkdir(parents=True)
    assert main(["replicate", "--data", str(tmp_path / "scenes"), "--storage", str(tmp_path / "out")]) == 2
    assert "train" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()

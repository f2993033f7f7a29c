"""Tables, figures, importance and the study report, from real experiments made here on digits."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis import study as comparison
from analysis.results import load_experiment
from analysis.tables import render, summary_table
from scenetune.cli import main
from scenetune.environment import current_environment, describe
from scenetune.experiment import load_trials

TINY = ["--set", "image_size=8", "--set", "width=64"]


@pytest.fixture(scope="module")
def experiments(tmp_path_factory: pytest.TempPathFactory, ray_session) -> Path:
    """An optuna sweep, a preset sweep, a diverged trial and an errored trial, all real."""
    storage = tmp_path_factory.mktemp("analysis")
    runs = {
        # Cold (no priors, which ASHA does not judge), so that every trial after the first 3 faces a cut-off.
        "search": ["--samples", "6", "--epochs", "3", "--max-concurrent", "1", "--no-prior", *TINY],
        "preset": ["--space", "lr", "--set", "epochs=2", *TINY],
        "diverged": ["--samples", "1", "--epochs", "3", "--set", "lr=1e12", "--set", "optimizer=sgd", *TINY],
        # A layer of 10^12 units cannot be allocated: the trial raises, as an out-of-memory trial does.
        "errored": [
            "--samples",
            "1",
            "--epochs",
            "1",
            "--max-failures",
            "0",
            "--set",
            "image_size=8",
            "--set",
            "width=1000000000000",
        ],
    }
    for name, arguments in runs.items():
        code = main(["sweep", "mlp", "--storage", str(storage), "--name", name, *arguments])
        assert code == (1 if name == "errored" else 0)
    return storage


def test_experiment_frames_and_statuses(experiments: Path) -> None:
    search = load_experiment(experiments / "search")
    assert len(search.trials) == 6 and set(search.trials["status"]) <= {"completed", "stopped_early"}
    assert "stopped_early" in set(search.trials["status"])
    assert len(search.history) == search.trials["epochs_run"].sum()
    assert {"config/lr", "config/depth", "val_acc", "test_acc", "epochs_run"} <= set(search.trials.columns)
    (diverged,) = load_experiment(experiments / "diverged").trials.to_dict("records")
    assert diverged["status"] == "diverged"
    (errored,) = load_experiment(experiments / "errored").trials.to_dict("records")
    assert errored["status"] == "error" and "allocate" in errored["error"]


def test_summary_tables_in_every_format(experiments: Path, capsys: pytest.CaptureFixture) -> None:
    preset = summary_table(load_experiment(experiments / "preset"))
    assert list(preset["name"]) == [
        f"lr={v:.3g}" for v in (1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6)
    ]  # the study's one-factor table
    search = summary_table(load_experiment(experiments / "search"))
    assert list(search["val_acc"]) == sorted(search["val_acc"], reverse=True)
    assert (
        main(
            [
                "table",
                str(experiments / "search"),
                str(experiments / "errored"),
                str(experiments / "diverged"),
            ]
        )
        == 0
    )
    markdown = capsys.readouterr().out
    assert (
        "### search (mlp, optuna, 6 trials)" in markdown
        and "| error: " in markdown
        and "diverged" in markdown
    )
    assert (
        main(
            [
                "table",
                str(experiments / "search"),
                str(experiments / "preset"),
                "--format",
                "csv",
                "--by",
                "optimizer",
            ]
        )
        == 0
    )
    csv = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert len(csv) == 12 and list(csv.columns[:3]) == ["experiment", "optimizer", "name"]
    assert list(csv["optimizer"]) == sorted(csv["optimizer"])
    assert main(["table", str(experiments / "preset"), "--format", "latex", "--top", "3"]) == 0
    latex = capsys.readouterr().out
    assert latex.count("\\\\\n") == 4 and "\\toprule" in latex  # header and three rows


def test_a_table_of_experiments_computed_differently_says_so(
    experiments: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert main(["table", str(experiments / "search"), str(experiments / "preset")]) == 0
    assert "environments" not in capsys.readouterr().err  # both ran here
    moved = tmp_path / "moved"
    shutil.copytree(experiments / "preset", moved)
    record = json.loads((moved / "scenetune.json").read_text())
    record["environment"]["packages"]["torch"] = "2.5.0"
    (moved / "scenetune.json").write_text(json.dumps(record))
    assert main(["table", str(experiments / "search"), str(moved), "--format", "csv"]) == 0
    captured = capsys.readouterr()
    assert "computed in other environments than search: moved (torch " in captured.err
    assert "-> 2.5.0)" in captured.err
    assert len(pd.read_csv(io.StringIO(captured.out))) > 0  # the table itself is untouched


def test_a_half_written_result_line_is_tolerated(experiments: Path, tmp_path: Path) -> None:
    running = shutil.copytree(experiments / "search", tmp_path / "running")
    result = sorted(running.glob("*/result.json"))[0]
    lines = result.read_text().splitlines(keepends=True)
    result.write_text("".join(lines[:-1]) + lines[-1][: len(lines[-1]) // 2])
    experiment = load_experiment(running)
    assert experiment.trials["epochs_run"].iloc[0] == len(lines) - 1
    table = summary_table(experiment)
    assert len(table) == 6 and "| " in render(table)
    assert len(experiment.history) == load_experiment(experiments / "search").trials["epochs_run"].sum() - 1


def test_plots_are_written_as_png_and_svg(
    experiments: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert main(["plot", str(experiments / "search"), "--out", str(tmp_path / "search")]) == 0
    names = {p.name for p in (tmp_path / "search").iterdir()}
    # Our own figures where Optuna has none, and Optuna's matplotlib figures of the rebuilt study.
    figures = (
        "learning_curves",
        "asha_stopped_trials",
        "optimization_history",
        "parallel_coordinates",
        "slices",
    )
    for figure in figures:
        assert {f"{figure}.png", f"{figure}.svg"} <= names
    assert main(["plot", str(experiments / "preset"), "--out", str(tmp_path / "preset")]) == 0
    png = tmp_path / "preset" / "accuracy_vs_lr.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "<svg" in (tmp_path / "preset" / "accuracy_vs_lr.svg").read_text()


def test_a_diverged_loss_is_clipped_so_it_does_not_flatten_the_others() -> None:
    from analysis.results import loss_ceiling

    losses = pd.Series([2.3, 1.0, 1.2, 0.9, 5.7e6, float("nan"), float("inf")])
    assert loss_ceiling(losses) == pytest.approx(1.2 * 20)  # median of the finite losses, times 20
    assert loss_ceiling(pd.Series([float("nan")])) is None


def test_importance_from_optuna_evaluators(experiments: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["importance", str(experiments / "search")]) == 0
    output = capsys.readouterr().out
    assert "| parameter" in output and "fanova" in output and "ped_anova" in output and "lr" in output
    assert (experiments / "search" / "figures" / "hyperparameter_importance.png").is_file()
    assert main(["importance", str(experiments / "diverged")]) == 2
    assert "importance needs at least 4 scored trials" in capsys.readouterr().err


def _approaches(mlp: float, svm: float, patch: float, learnt: float, sift: float) -> pd.DataFrame:
    values = {
        comparison.MLP: mlp,
        comparison.FEATURE_SVM: svm,
        comparison.PATCH_MLP: patch,
        comparison.BOVW_LEARNT: learnt,
        comparison.BOVW_SIFT: sift,
    }
    return comparison.approaches_frame(
        [{"approach": a, "val_acc": v, "test_acc": v} for a, v in values.items()]
    )


def _mlp_trials(depths: list[int], widths: list[int], accuracy: list[float]) -> pd.DataFrame:
    return pd.DataFrame({"config/depth": depths, "config/width": widths, "val_acc": accuracy})


def test_conclusions_follow_the_numbers() -> None:
    learnt_wins = comparison.conclusions(
        _approaches(0.60, 0.55, 0.77, 0.73, 0.50),
        _mlp_trials([1, 2, 3, 4, 5, 6, 7, 8], [512, 256, 1024, 2048] * 2, EIGHT_ACCURACIES),
    )
    sift_wins = comparison.conclusions(
        _approaches(0.60, 0.65, 0.55, 0.50, 0.80),
        _mlp_trials([8, 4, 2, 1, 8, 4, 2, 1], [32, 64, 128, 256, 512, 1024, 2048, 4096], EIGHT_ACCURACIES),
    )
    assert (
        learnt_wins[0]
        == "Patch MLP wins with test accuracy 0.770, 4.0 points ahead of BoVW, learnt descriptors (0.730)."
    )
    assert (
        sift_wins[0]
        == "BoVW, dense SIFT (handcrafted) wins with test accuracy 0.800, 15.0 points ahead of deep features + SVM (0.650)."
    )
    assert (
        "BoVW, learnt descriptors beat BoVW, dense SIFT (handcrafted) by 23.0 points of test accuracy (0.730 vs 0.500)."
        in learnt_wins
    )
    assert (
        "BoVW, learnt descriptors fell behind BoVW, dense SIFT (handcrafted) by 30.0 points of test accuracy (0.500 vs 0.800)."
        in sift_wins
    )
    assert (
        "Deep features + SVM fell short of end-to-end MLP by 5.0 points of test accuracy (0.550 vs 0.600)."
        in learnt_wins
    )
    # Patch MLP over learnt BoVW is the winner's sentence, so the study's comparison of the pair is not repeated.
    assert not any(s.startswith("BoVW, learnt descriptors fell behind patch MLP") for s in learnt_wins)
    assert any(s.startswith("BoVW, learnt descriptors fell behind patch MLP") for s in sift_wins)
    assert learnt_wins[-1].endswith("deeper beat wider.") and sift_wins[-1].endswith("wider beat deeper.")


EIGHT_ACCURACIES = [0.50, 0.55, 0.60, 0.62, 0.66, 0.70, 0.74, 0.80]


def test_depth_and_width_are_claimed_only_where_the_trials_can_tell() -> None:
    # Four trials in perfect rank order: a permutation test's exact p is 1/12, so no claim is made.
    few = comparison.conclusions(
        _approaches(0.60, 0.55, 0.77, 0.73, 0.50),
        _mlp_trials([1, 2, 4, 8], [512, 256, 1024, 2048], [0.5, 0.6, 0.7, 0.8]),
    )[-1]
    assert "with depth is +1.00 (p = 0.083)" in few
    assert few.endswith("the data cannot tell either from no effect.")
    # Eight trials where accuracy falls with depth and width varies at random to it.
    falling = comparison.conclusions(
        _approaches(0.60, 0.55, 0.77, 0.73, 0.50),
        _mlp_trials([8, 7, 6, 5, 4, 3, 2, 1], [256, 2048, 512, 1024] * 2, EIGHT_ACCURACIES),
    )[-1]
    assert "with depth is -1.00" in falling and falling.endswith(": more depth hurt, and neither helped.")


def _right_on_first(images: int, of: int = 100) -> np.ndarray:
    return np.arange(of) < images


@pytest.mark.parametrize(
    ("cnn_right", "ending"),
    [(80, "but the data cannot tell the two apart"), (95, "McNemar p = ")],
    ids=["close", "apart"],
)
def test_the_reference_cnn_is_compared_with_a_paired_test(cnn_right: int, ending: str) -> None:
    rows = [
        {"approach": comparison.PATCH_MLP, "val_acc": 0.8, "test_acc": 0.78},
        {"approach": comparison.MLP, "val_acc": 0.6, "test_acc": 0.60},
        {"approach": comparison.CNN_REFERENCE, "val_acc": 0.9, "test_acc": cnn_right / 100},
    ]
    correctness = {
        comparison.PATCH_MLP: _right_on_first(78),
        comparison.MLP: _right_on_first(60),
        comparison.CNN_REFERENCE: _right_on_first(cnn_right),
    }
    sentence = next(
        s
        for s in comparison.conclusions(comparison.approaches_frame(rows), correctness=correctness)
        if s.startswith("The small CNN (reference)")
    )
    assert "points above the best of the study's approaches (patch MLP, 0.780" in sentence
    assert ending in sentence and "95% CI" in sentence


def test_quick_study_end_to_end_and_resume(
    tmp_path: Path, ray_session, capsys: pytest.CaptureFixture
) -> None:
    assert main(["study", "--quick", "--refit", "2", "--storage", str(tmp_path), "--name", "quick"]) == 0
    study = tmp_path / "quick"
    output = capsys.readouterr().out
    assert f"study report: {study / 'study.md'}" in output
    # Each step says what it will run, and each refit how long it takes at the best trial's pace.
    assert (
        "== study step mlp: end-to-end MLP (a search of 6 trials, then 2 refits of its best configuration) =="
        in output
    )
    assert "then 1 refit of its best configuration) ==" in output.split("== study step feature_svm")[1]
    assert output.count(" each at the best trial's pace") == 6
    report = (study / "study.md").read_text()
    approaches = pd.read_csv(study / "study.csv")
    assert list(approaches["approach"]) == [
        comparison.MLP,
        comparison.FEATURE_SVM,
        comparison.PATCH_MLP,
        comparison.BOVW_LEARNT,
        comparison.BOVW_SIFT,
        comparison.CNN_REFERENCE,
    ]
    assert "The small CNN (reference) reaches test accuracy" in report
    # Every approach's test accuracy has its interval over the 450 test images, and comparisons are paired tests.
    assert (
        (approaches["test_acc_low"] <= approaches["test_acc"])
        & (approaches["test_acc"] <= approaches["test_acc_high"])
    ).all()
    # Comparisons are paired over the refit models' per-image shares: a paired permutation test.
    assert "permutation test p = " in report and "over 450 test images" in report
    assert "mean of 2 refits" in report
    assert (
        study / "figures" / "test_accuracy_per_approach.png"
    ).is_file() and "test_accuracy_per_approach.png" in report
    assert (study / "figures" / "mlp" / "confusion_matrix.png").is_file()
    # Every step was refitted: with 2 seeds, the SVM on fixed features once (a seed does not change it).
    seeds = approaches.set_index("approach")["refit_seeds"].to_dict()
    assert seeds == {
        comparison.MLP: 2,
        comparison.FEATURE_SVM: 1,
        comparison.PATCH_MLP: 2,
        comparison.BOVW_LEARNT: 2,
        comparison.BOVW_SIFT: 2,
        comparison.CNN_REFERENCE: 2,
    }
    # Dense SIFT's trials were chosen by cross-validation, and study.md says so; the others on validation.
    assert f"The `val_acc` of {comparison.BOVW_SIFT} (5 folds) is a cross-validated accuracy" in report
    assert comparison.PATCH_MLP not in report.split("The `val_acc` of ")[1].split(" is a cross")[0]
    refit_bovw = load_trials(study / "bovw_sift" / "refit")
    assert {t.config["refit_train_on"] for t in refit_bovw} == {"train+val"}
    assert len({t.config["seed"] for t in refit_bovw}) == 2  # two codebooks
    assert (study / "mlp" / "refit").is_dir() and len(
        list((study / "mlp" / "refit").glob("*/result.json"))
    ) == 2
    assert approaches["test_acc"].notna().all() and (approaches["test_acc"] > 0.5).all()
    for approach in approaches["approach"]:
        assert f"| {approach}" in report
    assert "## Conclusions" in report
    # What computed it: every step ran here, so one line names the versions and the instruction set.
    assert f"## Environment\n\n{describe(current_environment())}\n\nA trial repeats exactly" in report
    # A winner is named only where the paired test can tell it from the runner-up.
    assert " wins with test accuracy " in report or " has the highest test accuracy " in report
    assert (study / "figures" / "mlp" / "learning_curves.png").is_file()
    # Interrupted in a middle step: --resume redoes that step only, and keeps the steps before and after it.
    state = json.loads((study / "study.json").read_text())
    state["steps"]["feature_svm"] = "running"
    (study / "study.json").write_text(json.dumps(state))
    shutil.rmtree(study / "feature_svm")
    kept = ("mlp", "patch_mlp", "bovw_learnt", "bovw_sift", "cnn")
    before = {step: sorted((study / step).glob("experiment_state-*.json")) for step in kept}
    steps = ("feature_svm", *kept)
    drawn = {step: (study / "figures" / step / "confusion_matrix.png").stat().st_mtime_ns for step in steps}
    assert main(["study", "--storage", str(tmp_path), "--name", "quick", "--resume"]) == 0
    # The report is written again; only the redone step's figures are drawn again.
    redrawn = {
        step: (study / "figures" / step / "confusion_matrix.png").stat().st_mtime_ns != drawn[step]
        for step in steps
    }
    assert redrawn == {step: step == "feature_svm" for step in steps}
    resumed = capsys.readouterr().out
    assert "== study step feature_svm" in resumed and "== study step bovw_sift" not in resumed
    assert (study / "feature_svm" / "scenetune.json").is_file()
    assert before == {step: sorted((study / step).glob("experiment_state-*.json")) for step in kept}
    assert json.loads((study / "study.json").read_text())["steps"]["feature_svm"] == "done"

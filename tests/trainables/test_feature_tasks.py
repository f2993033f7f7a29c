"""The study's tasks 2-4 swept end to end: patch MLP, deep features + SVM, bag of visual words."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest

import trainables.features as features
from scenetune.cli import main
from scenetune.data import load_dataset
from scenetune.experiment import load_trials, read_experiment_record
from scenetune.request import SweepRequest
from scenetune.sweep import prepare
from trainables.descriptors import dense_sift

SMALL_MLP = ["--set", "image_size=8", "--set", "width=64", "--set", "depth=3"]
SMALL_PATCH_MLP = ["--set", "image_size=16", "--set", "width=32", "--set", "depth=2", "--set", "epochs=1"]


@pytest.fixture(scope="module")
def mlp_experiment(tmp_path_factory: pytest.TempPathFactory, ray_session) -> Path:
    storage = tmp_path_factory.mktemp("features")
    assert (
        main(
            [
                "sweep",
                "mlp",
                "--samples",
                "2",
                "--epochs",
                "2",
                *SMALL_MLP,
                "--storage",
                str(storage),
                "--name",
                "mlp",
            ]
        )
        == 0
    )
    return storage / "mlp"


@pytest.fixture(scope="module")
def patch_experiment(mlp_experiment: Path) -> Path:
    storage = mlp_experiment.parent
    assert (
        main(
            [
                "sweep",
                "patch_mlp",
                "--space",
                "patch_size",
                *SMALL_PATCH_MLP,
                "--storage",
                str(storage),
                "--name",
                "patch",
            ]
        )
        == 0
    )
    return storage / "patch"


def test_feature_svm_layer_preset_extracts_each_layer_once(
    mlp_experiment: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    real = features.extract_layer_features
    monkeypatch.setattr(
        features,
        "extract_layer_features",
        lambda model, images, layer: calls.append(layer) or real(model, images, layer),
    )
    assert (
        main(
            [
                "sweep",
                "feature_svm",
                "--from",
                str(mlp_experiment),
                "--space",
                "layer",
                "--storage",
                str(tmp_path),
                "--name",
                "layers",
            ]
        )
        == 0
    )
    trials = load_trials(tmp_path / "layers")
    assert sorted(t.config["layer"] for t in trials) == ["fourth", "second", "third"]
    for trial in trials:
        assert {"train_acc", "val_acc", "test_acc", "fit_seconds"} <= set(trial.last) and trial.last[
            "epoch"
        ] == 1
        assert trial.last["n_features"] == {"second": 64, "third": 32, "fourth": 16}[trial.config["layer"]]
    assert max(t.last["val_acc"] for t in trials) > 0.5
    sizes = read_experiment_record(tmp_path / "layers")["data"]["sizes"]
    for trial in trials:  # a network's features of its own train images: scored on validation, not by folds
        assert trial.last["cv_folds"] == 0 and trial.last["val_images"] == sizes["val"]
        assert trial.last["val_acc"] == trial.last["holdout_val_acc"]
    assert sorted(calls) == sorted(["second", "third", "fourth"] * 3)  # train, val, test once per layer
    calls.clear()
    assert (
        main(
            [
                "sweep",
                "feature_svm",
                "--from",
                str(mlp_experiment),
                "--samples",
                "8",
                "--storage",
                str(tmp_path),
                "--name",
                "optuna",
            ]
        )
        == 0
    )
    assert len(load_trials(tmp_path / "optuna")) == 8
    assert len(calls) == 9  # 8 SVM trials, still one extraction per (layer, split)


def test_patch_mlp_sweeps_the_patch_sizes_that_fit(patch_experiment: Path) -> None:
    trials = load_trials(patch_experiment)
    assert sorted(t.config["patch_size"] for t in trials) == [8, 16]
    for trial in (
        trials
    ):  # test accuracy is that of the best validation epoch, the checkpoint's, well above chance (0.1)
        best = max(trial.history, key=lambda report: report["val_acc"])
        assert trial.last["test_acc"] == best["test_acc"] > 0.2 and trial.checkpoints()


def test_bovw_learnt_descriptors_and_codebook_are_computed_once(
    patch_experiment: Path, tmp_path: Path
) -> None:
    arguments = [
        "sweep",
        "bovw",
        "--from",
        str(patch_experiment),
        "--set",
        "descriptor=learnt",
        "--set",
        "layer=last",
        "--set",
        "codebook_size=8",
        "--samples",
        "5",
        "--max-trial-seconds",  # the codebook is fitted under its deadline (trainables.descriptors)
        "600",
        "--storage",
        str(tmp_path),
        "--name",
        "learnt",
    ]
    assert main(arguments) == 0
    trials = load_trials(tmp_path / "learnt")
    assert len(trials) == 5 and all(math.isfinite(t.last["val_acc"]) for t in trials)
    assert sum(not t.last["descriptors_cached"] for t in trials) == 1
    (fitted,) = [t for t in trials if not t.last["codebook_cached"]]
    assert fitted.last["codebook_fit_seconds"] > 0  # what the cost estimate calibrates by
    assert all("codebook_fit_seconds" not in t.last for t in trials if t is not fitted)
    assert sum(not t.last["word_counts_cached"] for t in trials) == 1  # later trials load only the counts
    assert all(t.last["cv_folds"] == 0 for t in trials)  # learnt descriptors: scored on validation


def test_a_feature_task_takes_its_networks_split_or_the_test_folder_and_refuses_another_fraction(
    mlp_experiment: Path, tmp_path: Path, capsys
) -> None:
    network = read_experiment_record(mlp_experiment)["data"]["sizes"]
    request = SweepRequest(task="feature_svm", source=str(mlp_experiment), storage=str(tmp_path), name="x")
    assert prepare(request).trial_data.split_sizes() == network  # the network's carved split
    on_test = prepare(dataclasses.replace(request, val_from_test=True))
    assert on_test.request.val_from_test and on_test.trial_data.split_sizes() == {
        "train": network["train"] + network["val"],
        "val": network["test"],
        "test": network["test"],
    }
    # Another carved share would put images the network trained on into validation.
    arguments = ["sweep", "feature_svm", "--from", str(mlp_experiment), "--val-fraction", "0.3"]
    assert main([*arguments, "--storage", str(tmp_path), "--name", "x"]) == 2
    error = capsys.readouterr().err
    assert (
        "--val-fraction 0.3 differs from the split the --from network was trained with (--val-fraction 0.15)"
        in error
    )
    assert not (tmp_path / "x").exists()


def test_bovw_sift_codebook_preset_and_infeasible_codebook(tmp_path: Path, ray_session) -> None:
    sift = ["--set", "image_size=16", "--set", "sift_step=8", "--set", "sift_size=8"]
    assert (
        main(["sweep", "bovw", "--space", "codebook", *sift, "--storage", str(tmp_path), "--name", "sift"])
        == 0
    )
    trials = load_trials(tmp_path / "sift")
    assert sorted(t.config["codebook_size"] for t in trials) == [64, 128, 256, 512, 1024]
    assert all(t.last["descriptors_per_image"] == 4 and t.last["test_acc"] > 0.2 for t in trials)
    sizes = read_experiment_record(tmp_path / "sift")["data"]["sizes"]
    for trial in trials:  # dense SIFT: scored by 5 folds of train + validation, the same for every trial
        assert trial.config["select_by_cross_validation"] is True and trial.last["cv_folds"] == 5
        assert trial.last["val_images"] == sizes["train"] + sizes["val"] and 0.2 < trial.last["val_acc"] <= 1
    # With the test folder as validation, the folds would pool it: trials are scored on it alone.
    on_test = ["sweep", "bovw", "--samples", "1", *sift, "--val", "test", "--storage", str(tmp_path)]
    assert main([*on_test, "--name", "on-test"]) == 0
    (scored_on_test,) = load_trials(tmp_path / "on-test")
    assert "select_by_cross_validation" not in scored_on_test.config and scored_on_test.last["cv_folds"] == 0
    assert (
        scored_on_test.last["val_acc"]
        == scored_on_test.last["holdout_val_acc"]
        == scored_on_test.last["test_acc"]
    )
    assert (
        main(
            [
                "sweep",
                "bovw",
                "--samples",
                "1",
                *sift,
                "--set",
                "codebook_size=100000",
                "--storage",
                str(tmp_path),
                "--name",
                "big",
            ]
        )
        == 0
    )
    (trial,) = load_trials(tmp_path / "big")
    assert (
        trial.last["infeasible"] is True
        and "exceeds the 4580 training descriptors" in trial.last["error_message"]
    )


def test_dense_sift_on_small_digits_and_scenes(mit_split: Path) -> None:
    digits = load_dataset("digits", [8, 32]).train
    assert dense_sift(digits[8].x[:3], step=4, size=8).values.shape == (3, 128)
    on_digits = dense_sift(digits[32].x[:3], step=8, size=16)
    assert on_digits.values.shape == (3 * 9, 128) and np.abs(on_digits.values).sum() > 0
    scenes = load_dataset(str(mit_split), [64]).train[64].x[:2]
    assert dense_sift(scenes, step=8, size=16).values.shape == (2 * 49, 128)
    with pytest.raises(
        ValueError, match="SIFT grid step 16 and keypoint size 8 must not exceed the image size 8"
    ):
        dense_sift(digits[8].x[:1], step=16, size=8)


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["feature_svm"], "feature_svm needs --from, a cnn or mlp experiment or checkpoint"),
        (["feature_svm", "--from", "/no/such/run"], "/no/such/run does not exist"),
        (["bovw", "--set", "descriptor=learnt"], "learnt descriptors need --from"),
        (
            ["bovw", "--set", "image_size=16", "--set", "sift_step=64"],
            "sift_step 64 must lie between 1 and the image size 16",
        ),
        (["mlp", "--from", "."], "mlp trains from pixels and takes no --from"),
    ],
)
def test_feature_task_bad_input(
    arguments: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert main(["sweep", *arguments, "--storage", str(tmp_path), "--name", "x"]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_from_must_hold_the_right_kind_of_model(
    mlp_experiment: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert (
        main(["sweep", "bovw", "--from", str(mlp_experiment), "--storage", str(tmp_path), "--name", "x"]) == 2
    )
    assert "holds mlp models, but bovw needs a patch_mlp experiment or checkpoint" in capsys.readouterr().err
    assert (
        main(["sweep", "feature_svm", "--from", str(tmp_path), "--storage", str(tmp_path), "--name", "y"])
        == 2
    )
    assert "is neither a checkpoint" in capsys.readouterr().err


def test_histogram_intersection_kernel_in_chunks_equals_its_definition(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import trainables.svm as svm

    rng = np.random.default_rng(0)
    a, b = rng.random((7, 5)), rng.random((4, 5))
    expected = np.array([[np.minimum(x, y).sum() for y in b] for x in a])
    monkeypatch.setattr(svm, "INTERSECTION_CHUNK_ELEMENTS", 2 * 4 * 5)  # two rows per chunk
    assert np.allclose(svm.histogram_intersection(a, b), expected)

"""Faults that long sweeps meet, each really provoked: a killed worker, a raising trial, Ctrl-C."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from analysis.results import load_experiment
from analysis.tables import summary_table
from scenetune.cli import main
from scenetune.experiment import (
    DRIVER_FILE,
    EXPERIMENT_STATE_PREFIX,
    KEPT_SAVE_FILE,
    RESULT_FILE,
    load_trials,
    newest_experiment_state,
    ray_trial_states,
    saved_state_files,
    session_of,
)
from scenetune.heartbeat import RESUME_LOCK_FILE
from scenetune.recovery import RecordedCheckpoint, recorded_checkpoints
from tests.processes import kill_and_wait_for_ray
from trainables.checkpoints import load_training_state
from trainables.training import scheduled_lr

pytestmark = pytest.mark.integration  # real sweeps, servers and browsers

TINY = ["--set", "image_size=8", "--set", "width=32"]


def _scenetune(*arguments: str) -> list[str]:
    return [sys.executable, "-m", "scenetune", *arguments]


def _sweep_of_long_trials(samples: int, epochs: int) -> list[str]:
    """A sweep of tiny trials, one at a time, each running every epoch (no early stopping), so that a
    test can act while trials still run: at 2-3 epochs under ASHA a trial took 50 ms, and a faster
    machine than this one ended the sweep before the test could act."""
    return [
        "sweep",
        "mlp",
        "--samples",
        str(samples),
        "--epochs",
        str(epochs),
        "--early-stopping",
        "none",
    ] + [
        "--max-concurrent",
        "1",
        *TINY,
    ]


def _wait_for(condition, process: subprocess.Popen):
    """What `condition` returns once it is true, polled while the sweep runs."""
    while not (value := condition()):
        assert process.poll() is None, f"the sweep ended first: {process.communicate()}"
        time.sleep(0.1)
    return value


def test_a_killed_worker_restarts_its_trial_from_the_checkpoint(tmp_path: Path) -> None:
    arguments = [
        "sweep",
        "mlp",
        "--samples",
        "1",
        "--epochs",
        "6",
        "--set",
        "batch_size=8",
        "--set",
        "image_size=16",
        "--set",
        "width=256",
        "--set",
        "optimizer=sgd",
        "--set",
        "lr=0.01",
        "--storage",
        str(tmp_path),
        "--name",
        "killed-worker",
    ]
    process = subprocess.Popen(
        _scenetune(*arguments), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    experiment = tmp_path / "killed-worker"

    def checkpointed_twice() -> bool:
        trials = load_trials(experiment) if experiment.is_dir() else []
        return bool(trials) and len(trials[0].history) >= 2 and bool(trials[0].checkpoints())

    _wait_for(checkpointed_twice, process)
    (trial,) = load_trials(experiment)
    os.kill(trial.last["pid"], signal.SIGKILL)  # the trial's worker process dies mid-trial
    stdout, stderr = process.communicate()
    assert process.returncode == 0, stdout + stderr
    (trial,) = load_trials(experiment)
    assert trial.last["epoch"] == 6 and trial.last["attempt"] == 2
    restarted = next(r for r in trial.history if r["attempt"] == 2)
    assert restarted["epoch"] > 1  # continued from a checkpoint, not from scratch
    assert summary_table(load_experiment(experiment))["status"].iloc[0] == "completed (1 retry)"


def test_a_raising_trial_is_an_error_and_the_others_finish(tmp_path: Path, ray_session, capsys) -> None:
    # Batch norm cannot train on batches of one image: that grid point raises, the others do not.
    arguments = [
        "sweep",
        "mlp",
        "--space",
        "batch_size",
        "--set",
        "batch_norm=true",
        "--set",
        "epochs=1",
        "--max-failures",
        "0",
        *TINY,
        "--storage",
        str(tmp_path),
        "--name",
        "raising",
    ]
    assert main(arguments) == 1
    assert "1 of 8 trials failed" in capsys.readouterr().err
    trials = load_experiment(tmp_path / "raising").trials.set_index("config/batch_size")
    assert (
        trials.loc[1, "status"] == "error"
        and "Expected more than 1 value per channel" in trials.loc[1, "error"]
    )
    assert set(trials.drop(index=1)["status"]) == {"completed"}


def test_ctrl_c_stops_cleanly_and_the_sweep_resumes(tmp_path: Path) -> None:
    # Ctrl-C lands while trials run.
    arguments = [*_sweep_of_long_trials(4, 40), "--storage", str(tmp_path), "--name", "interrupted"]
    process = subprocess.Popen(
        _scenetune(*arguments), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    experiment = tmp_path / "interrupted"
    _wait_for(lambda: experiment.is_dir() and any(t.history for t in load_trials(experiment)), process)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate()
    assert process.returncode == 130, stdout + stderr
    assert f"Continue it with: scenetune sweep mlp --storage {tmp_path} --name interrupted --resume" in stderr
    before = {t.trial_id: t.history for t in load_trials(experiment) if t.history}
    statuses = set(load_experiment(experiment).trials["status"])
    assert not statuses & {
        "running",
        "pending",
    }  # nothing runs any more: unfinished trials read `interrupted`
    resumed = subprocess.run(
        _scenetune("sweep", "mlp", "--storage", str(tmp_path), "--name", "interrupted", "--resume"),
        capture_output=True,
        text=True,
    )
    assert resumed.returncode == 0, resumed.stderr
    trials = load_trials(experiment)
    assert len(trials) == 4 and all(t.history for t in trials)
    for trial in trials:  # nothing written before Ctrl-C was lost
        if trial.trial_id in before:
            resumed_history = [_measured(report) for report in trial.history]
            assert resumed_history[: len(before[trial.trial_id])] == [
                _measured(report) for report in before[trial.trial_id]
            ]


# When and where an epoch ran, and how Ray numbered its report. An epoch that reported in the instant
# before Ctrl-C, before Ray's driver recorded its checkpoint in the state it saves, is trained again on
# resume; seeded, it reports the same numbers, from another process at another time, as the trial's
# second attempt. A resumed trial reports its checkpoint's epochs once more: Ray numbers that report and
# its checkpoint anew.
RUN_FIELDS = {
    "attempt",
    "training_iteration",
    "iterations_since_restore",
    "checkpoint_dir_name",
    "pid",
    "node_id",
    "timestamp",
    "date",
    "time_this_iter_s",
    "time_total_s",
    "time_since_restore",
    "trial_seconds",
    "train_samples_per_s",
}


def _measured(report: dict) -> dict:
    return {key: value for key, value in report.items() if key not in RUN_FIELDS}


def _running_trial_checkpoint(experiment: Path) -> RecordedCheckpoint | None:
    # Both readers return nothing while Ray is rewriting its state file.
    running = {tid for tid, status in ray_trial_states(experiment).items() if status == "RUNNING"}
    return next(
        (c for c in recorded_checkpoints(experiment) if c.trial_id in running and c.path.exists()), None
    )


def _next_checkpoint(checkpoint: Path) -> Path:
    """Where Ray saves a trial's checkpoint after `checkpoint`."""
    return checkpoint.with_name(f"checkpoint_{int(checkpoint.name.split('_')[1]) + 1:06d}")


def test_a_checkpoint_replaced_after_the_last_saved_state_is_resumed_from_with_the_reports_the_kill_lost(
    tmp_path: Path,
) -> None:
    arguments = [
        "sweep",
        "mlp",
        "--samples",
        "1",
        "--epochs",
        "10",
        "--set",
        "batch_size=8",
        "--set",
        "image_size=16",
        "--set",
        "width=256",
        "--set",
        "optimizer=sgd",
        "--set",
        "lr=0.01",
        "--storage",
        str(tmp_path),
        "--name",
        "superseded",
    ]
    process = subprocess.Popen(
        _scenetune(*arguments),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    experiment = tmp_path / "superseded"
    try:
        _wait_for(lambda: _running_trial_checkpoint(experiment) is not None, process)
    finally:
        kill_and_wait_for_ray(process, group=True)  # the orphaned worker could still save a checkpoint
    (recorded,) = recorded_checkpoints(experiment)
    # What Ray leaves when killed between two steps: a newer checkpoint on disk, the recorded one deleted.
    newer = _next_checkpoint(recorded.path)
    if newer.exists():
        shutil.rmtree(recorded.path, ignore_errors=True)  # the kill may have landed just after Ray did so
    elif recorded.path.exists():
        recorded.path.rename(newer)
    # What else the kill can leave: a later checkpoint that the worker saved after the driver's last
    # record, and the reports of the epochs the continued checkpoint holds, lost with the driver.
    later = _next_checkpoint(newer)
    if not later.exists():
        shutil.copytree(newer, later)
    continued = load_training_state(newer)
    continued_from, lost = continued["epoch"], continued["reports"]
    assert [r["epoch"] for r in lost][-1] == continued_from
    # The loop trained that epoch at the annealed rate the defaults ask for (from 0.01 towards 0).
    annealed = scheduled_lr({"lr": 0.01, "epochs": 10, "lr_schedule": "cosine"}, continued_from)
    assert continued["optimizer"]["param_groups"][0]["lr"] == pytest.approx(annealed)
    result_file = newer.parent / RESULT_FILE
    kept = [
        line for line in result_file.read_text().splitlines() if json.loads(line)["epoch"] < lost[0]["epoch"]
    ]
    result_file.write_text("".join(f"{line}\n" for line in kept))
    resumed = subprocess.run(
        _scenetune("sweep", "mlp", "--storage", str(tmp_path), "--name", "superseded", "--resume"),
        capture_output=True,
        text=True,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert f"trial {recorded.trial_id} continues from {newer.name}" in resumed.stderr
    assert "1 later checkpoint(s) removed" in resumed.stderr
    (trial,) = load_trials(experiment)
    assert [r["epoch"] for r in trial.history] == list(range(1, 11))  # no epoch lost, none twice
    # The lost reports are back as the run that trained them made them (a rerun's clock would differ);
    # training went on after them.
    replayed = [r for r in trial.history if lost[0]["epoch"] <= r["epoch"] <= continued_from]
    assert [(r["val_acc"], r["trial_seconds"], r["train_samples_per_s"]) for r in replayed] == [
        (r["val_acc"], r["trial_seconds"], r["train_samples_per_s"]) for r in lost
    ]
    first_after_resume = next(r for r in trial.history if r["attempt"] == 2)
    assert first_after_resume["epoch"] == continued_from + 1
    # A resume after the driver was killed is no retry: the trial's worker never failed.
    assert summary_table(load_experiment(experiment))["status"].iloc[0] == "completed"


def test_a_resume_while_the_driver_still_runs_is_refused_and_the_sweep_goes_on(tmp_path: Path) -> None:
    # A second terminal's `--resume` would put two drivers on one experiment.
    # 100 trials outlast the refused resume by far; the test stops them with Ctrl-C.
    arguments = _sweep_of_long_trials(100, 20)
    process = subprocess.Popen(
        _scenetune(*arguments, "--storage", str(tmp_path), "--name", "live"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    experiment = tmp_path / "live"
    _wait_for(lambda: experiment.is_dir() and any(t.history for t in load_trials(experiment)), process)
    refused = subprocess.run(
        _scenetune("sweep", "mlp", "--storage", str(tmp_path), "--name", "live", "--resume"),
        capture_output=True,
        text=True,
    )
    assert refused.returncode == 2
    message = refused.stderr.strip().splitlines()
    assert len(message) == 1, refused.stderr
    assert message[0].startswith(
        f"scenetune: error: cannot resume: experiment {experiment} is being run now by process "
        f"{process.pid} on {socket.gethostname()} (since "
    ) and message[0].endswith("); wait for it to end or stop it first")
    assert process.poll() is None  # the running sweep was not disturbed
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate()
    assert process.returncode == 130, stdout + stderr


def test_a_state_file_cut_by_a_kill_is_mended_from_a_whole_copy_and_without_one_the_resume_stops(
    tmp_path: Path, ray_session, capsys
) -> None:
    """A kill while Ray copies its saved state into the experiment folder leaves a file cut short.
    Ray cannot restore that state: it logs so and runs the experiment again from its first trial,
    beside the trials it already has. The resume mends the file from Ray's complete copy in its driver
    staging folder. Ray writes that copy in place, so a kill can cut it too, and a reboot clears it:
    then the resume mends from the copy of the last whole save that the sweep kept in the experiment
    folder. Where neither is left, it stops and leaves the experiment as it was."""
    name = ["--storage", str(tmp_path), "--name", "cut"]
    assert main(["sweep", "mlp", "--samples", "2", "--epochs", "1", "--seed", "4", *TINY, *name]) == 0
    experiment = tmp_path / "cut"
    finished = set(ray_trial_states(experiment))
    searcher_state = sorted(experiment.glob("searcher-state-*.pkl"))[-1]
    whole = searcher_state.read_bytes()
    searcher_state.write_bytes(whole[:64])
    capsys.readouterr()

    assert main(["sweep", "mlp", "--resume", *name]) == 0
    session = searcher_state.name.removeprefix("searcher-state-").removesuffix(".pkl")
    assert (
        f"scenetune: {searcher_state.name} cut short by the kill; put back Ray's complete save of {session}"
        in capsys.readouterr().err
    )
    assert searcher_state.read_bytes() == whole
    assert ray_trial_states(experiment) == dict.fromkeys(finished, "TERMINATED")  # nothing ran again

    # The resume's own session: its experiment state cut to nothing, Ray's staged copy gone.
    state_file = newest_experiment_state(experiment)
    session = session_of(state_file)
    whole_statuses = _statuses_in(state_file)
    state_file.write_bytes(b"")
    _remove_staged_copies("cut", state_file.name)
    capsys.readouterr()

    assert main(["sweep", "mlp", "--resume", *name]) == 0
    assert (
        f"scenetune: {state_file.name} cut short by the kill; put back the last whole save of {session}, "
        f"which the sweep kept in {KEPT_SAVE_FILE}" in capsys.readouterr().err
    )
    # The kept copy is a whole save of the same session; Ray may have saved its clock once more after it.
    assert _statuses_in(state_file) == whole_statuses == dict.fromkeys(finished, "TERMINATED")
    assert ray_trial_states(experiment) == dict.fromkeys(finished, "TERMINATED")

    # Neither copy left: the kept one gone too (a disk restored without hidden files).
    searcher_state = sorted(experiment.glob("searcher-state-*.pkl"))[-1]  # the third session's
    searcher_state.write_bytes(searcher_state.read_bytes()[:64])
    _remove_staged_copies("cut", searcher_state.name)
    (experiment / KEPT_SAVE_FILE).unlink()
    before = _contents(experiment)
    capsys.readouterr()

    assert main(["sweep", "mlp", "--resume", *name]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith(
        f"scenetune: error: cannot resume {experiment}: Ray could not restore its saved state ("
    )
    assert error.endswith("nothing was run and nothing saved was changed") and "\n" not in error
    assert _contents(experiment) == before


def test_trial_reports_a_kill_cut_while_ray_copied_them_are_put_back_from_its_staged_copy(
    tmp_path: Path, ray_session, capsys
) -> None:
    """Ray writes each trial's result.json and progress.csv in its driver staging folder and copies
    them into the experiment folder with its saved state. A kill during that copy left an ended
    trial's result.json empty while its 20 epochs stood whole in the staging folder (seen in a
    kill-and-resume test). Ray never copies an ended trial's reports again, so its epochs would be
    lost for good: the resume puts back the staged copy that continues the cut file."""
    name = ["--storage", str(tmp_path), "--name", "reports"]
    sweep = ["sweep", "mlp", "--samples", "2", "--epochs", "3", "--early-stopping", "none", "--seed", "5"]
    assert main([*sweep, *TINY, *name]) == 0
    experiment = tmp_path / "reports"
    histories = {trial.trial_id: trial.history for trial in load_trials(experiment)}
    assert [len(history) for history in histories.values()] == [3, 3]
    first, second = sorted(folder for folder in experiment.iterdir() if folder.name.startswith("train_mlp_"))
    whole_result = (first / RESULT_FILE).read_bytes()
    whole_progress = (second / "progress.csv").read_bytes()
    (first / RESULT_FILE).write_bytes(b"")  # as the kill left it
    (second / "progress.csv").write_bytes(whole_progress[: len(whole_progress) // 2])  # cut mid-line
    assert sorted(len(trial.history) for trial in load_trials(experiment)) == [0, 3]
    capsys.readouterr()

    assert main(["sweep", "mlp", "--resume", *name]) == 0
    assert (
        f"scenetune: {first.name}/{RESULT_FILE}, {second.name}/progress.csv cut short by the kill; "
        "put back Ray's staged copy" in capsys.readouterr().err
    )
    assert (first / RESULT_FILE).read_bytes() == whole_result
    assert (second / "progress.csv").read_bytes() == whole_progress
    assert {trial.trial_id: trial.history for trial in load_trials(experiment)} == histories
    assert set(ray_trial_states(experiment).values()) == {"TERMINATED"}  # nothing ran again

    # Whole files are left as they are: a second resume finds nothing to put back.
    assert main(["sweep", "mlp", "--resume", *name]) == 0
    assert "cut short" not in capsys.readouterr().err
    assert (first / RESULT_FILE).read_bytes() == whole_result


def _statuses_in(experiment_state: Path) -> dict[str, str]:
    """trial id -> Ray's status in one saved experiment state file (raises if the file is not whole)."""
    trials = json.loads(experiment_state.read_text())["trial_data"]
    return {json.loads(trial)["trial_id"]: json.loads(trial)["status"] for trial, _ in trials}


def _remove_staged_copies(experiment_name: str, file_name: str) -> None:
    """Delete Ray's staged copies of a state file, as a reboot that cleared Ray's temporary folder does."""
    from ray.train.constants import _get_ray_train_session_dir

    staged = list(
        Path(_get_ray_train_session_dir()).glob(f"*/{experiment_name}/driver_artifacts/{file_name}")
    )
    assert staged, f"Ray staged no copy of {file_name}"
    for copy in staged:
        copy.unlink()


def _contents(experiment: Path) -> dict[Path, bytes]:
    """Every file of an experiment but the lock and heartbeat a resume takes over from a killed driver."""
    return {
        p: p.read_bytes()
        for p in experiment.rglob("*")
        if p.is_file() and p.name not in (RESUME_LOCK_FILE, DRIVER_FILE)
    }


@pytest.mark.parametrize(
    "split", ["trial not yet saved", "trial saved as ended", "search saved before the trial"]
)
def test_a_kill_that_split_rays_copy_of_its_state_is_mended_and_without_a_copy_refused(
    tmp_path: Path, ray_session, split: str
) -> None:
    """A kill between the files of Ray's copy can pair a search that counts a trial as running with an
    experiment state from another save: one from before the trial began, or one from after it ended
    (seen in a kill-and-resume loop). The resume would never run that trial, and Ray would wait for it
    for ever. Or it pairs the experiment state with a search saved before that trial was made: the
    resume would run a trial more than asked. The resume puts back Ray's whole save, or the copy of
    it that the sweep kept; without either it refuses."""
    import ray.cloudpickle
    from ray.train.constants import _get_ray_train_session_dir

    first, second, third = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    # Trials of a second or more, so that a saved state holds one trial ended and the next one running.
    arguments = _sweep_of_long_trials(3, 100)
    process = subprocess.Popen(
        _scenetune(*arguments, "--storage", str(first), "--name", "split"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    experiment = first / "split"
    try:
        save = _wait_for(lambda: _one_trial_ended_and_the_next_running(experiment), process)
    finally:
        kill_and_wait_for_ray(process, group=True)
    # The kill may have cut or split Ray's copy on its own; the case is built from the save seen before it.
    for name, content in save.items():
        (experiment / name).write_bytes(content)
    state_file = newest_experiment_state(experiment)
    session = state_file.name.removeprefix(EXPERIMENT_STATE_PREFIX).removesuffix(".json")
    search = ray.cloudpickle.loads(save[f"search_gen_state-{session}.json"])
    (waited_for,) = search["name:ConcurrencyLimiter"]["live_trials"]
    state = json.loads(save[state_file.name])
    if split == "trial not yet saved":
        state["trial_data"] = [t for t in state["trial_data"] if json.loads(t[0])["trial_id"] != waited_for]
    elif split == "trial saved as ended":
        state["trial_data"] = [[_ended(t[0], waited_for), t[1]] for t in state["trial_data"]]
    else:  # the search as it was saved before it made that trial
        search["counter"] -= 1
        search["name:ConcurrencyLimiter"]["live_trials"] = set()
        (experiment / f"search_gen_state-{session}.json").write_bytes(ray.cloudpickle.dumps(search))
    state_file.write_text(json.dumps(state))
    shutil.copytree(first, second)
    shutil.copytree(first, third)
    mended = (
        f"the experiment state holds {len(state['trial_data'])} trials, the search made {search['counter']}"
        if split == "search saved before the trial"
        else f"the search waits for trial {waited_for}"
    )

    resumed = subprocess.run(
        _scenetune("sweep", "mlp", "--storage", str(first), "--name", "split", "--resume"),
        capture_output=True,
        text=True,
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"the kill split Ray's copy of its state ({mended}); put back" in resumed.stderr
    assert list(ray_trial_states(experiment).values()) == ["TERMINATED"] * 3  # none was run twice

    for staged in Path(_get_ray_train_session_dir()).parent.parent.glob(
        f"session_*/artifacts/*/split/driver_artifacts/*-{session}.*"
    ):
        staged.unlink()  # as a reboot that cleared Ray's temporary folder leaves it
    (third / "split" / KEPT_SAVE_FILE).unlink()  # a disk restored without hidden files
    before = _contents(third / "split")
    refused = subprocess.run(
        _scenetune("sweep", "mlp", "--storage", str(third), "--name", "split", "--resume"),
        capture_output=True,
        text=True,
    )
    assert refused.returncode == 2, refused.stdout + refused.stderr
    error = refused.stderr.strip().splitlines()[-1]
    assert error.startswith(
        f"scenetune: error: cannot resume {third / 'split'}: the kill split Ray's copy of its state ({mended})"
    )
    assert error.endswith("nothing was run and nothing saved was changed")
    assert _contents(third / "split") == before

    # The resume syncs the mended save into a staging folder of its own: so the kept copy is tried last.
    resumed = subprocess.run(
        _scenetune("sweep", "mlp", "--storage", str(second), "--name", "split", "--resume"),
        capture_output=True,
        text=True,
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert (
        f"the kill split Ray's copy of its state ({mended}); put back the last whole save of {session}, "
        f"which the sweep kept in {KEPT_SAVE_FILE}"
    ) in resumed.stderr
    assert list(ray_trial_states(second / "split").values()) == ["TERMINATED"] * 3


def _one_trial_ended_and_the_next_running(experiment: Path) -> dict[str, bytes] | None:
    """The newest saved state files (name -> content) when they read whole and agree, and show one
    trial ended and the search waiting for the next one, which runs; None while Ray's copy is under
    way or the sweep is elsewhere."""
    import ray.cloudpickle

    state_file = newest_experiment_state(experiment)
    if state_file is None:
        return None
    session = state_file.name.removeprefix(EXPERIMENT_STATE_PREFIX).removesuffix(".json")
    save = {name: path.read_bytes() for name, path in saved_state_files(experiment, session).items()}
    try:
        trials = [json.loads(trial) for trial, _ in json.loads(save[state_file.name])["trial_data"]]
        search = ray.cloudpickle.loads(save[f"search_gen_state-{session}.json"])
        ray.cloudpickle.loads(save[f"searcher-state-{session}.pkl"])
    except Exception:  # a file cut short or not yet written: whatever its reader raises
        return None
    running = {trial["trial_id"] for trial in trials if trial["status"] == "RUNNING"}
    waited_for = set(search["name:ConcurrencyLimiter"]["live_trials"])
    agree = waited_for == running and search["counter"] == len(trials)
    ended = any(trial["status"] == "TERMINATED" for trial in trials)
    return save if agree and ended and len(running) == 1 else None


def _ended(trial_state: str, trial_id: str) -> str:
    trial = json.loads(trial_state)
    return json.dumps({**trial, "status": "TERMINATED"}) if trial["trial_id"] == trial_id else trial_state

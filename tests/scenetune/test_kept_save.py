"""The copy of Ray's last whole save that a sweep keeps in its experiment folder."""

from __future__ import annotations

from pathlib import Path

from scenetune.experiment import KEPT_SAVE_FILE
from scenetune.kept_save import keep_save, unpack_kept_save


def stage_save(staging: Path, session: str, trials: int) -> dict[str, bytes]:
    """The files Ray writes for one save of a session, and a temporary one it writes first."""
    staging.mkdir(parents=True, exist_ok=True)
    save = {
        f"experiment_state-{session}.json": f'{{"trial_data": [], "trials": {trials}}}'.encode(),
        f"search_gen_state-{session}.json": f"search after {trials} trials".encode(),
        f"searcher-state-{session}.pkl": f"optuna after {trials} trials".encode(),
    }
    for name, content in save.items():
        (staging / name).write_bytes(content)
    (staging / f"tmp-searcher-state-{session}.pkl").write_bytes(b"half written")
    return save


def unpacked(experiment: Path, session: str, into: Path) -> dict[str, bytes]:
    into.mkdir()
    return {name: path.read_bytes() for name, path in unpack_kept_save(experiment, session, into).items()}


def test_the_newest_save_is_kept_whole_and_only_given_back_for_its_own_session(tmp_path: Path) -> None:
    staging, experiment = tmp_path / "driver_artifacts", tmp_path / "experiment"
    experiment.mkdir()
    stage_save(staging, "2026-12-02_10-00-00", trials=3)
    later = stage_save(staging, "2026-12-02_11-00-00", trials=5)  # a resume's session, beside the first
    keep_save(staging, experiment)

    assert unpacked(experiment, "2026-12-02_11-00-00", tmp_path / "a") == later  # no temporary file
    assert unpacked(experiment, "2026-12-02_10-00-00", tmp_path / "b") == {}
    assert [path.name for path in experiment.iterdir()] == [KEPT_SAVE_FILE]  # nothing half written left

    newer = stage_save(staging, "2026-12-02_11-00-00", trials=6)
    keep_save(staging, experiment)
    assert unpacked(experiment, "2026-12-02_11-00-00", tmp_path / "c") == newer


def test_an_experiment_without_a_kept_save_or_with_a_damaged_one_has_none(tmp_path: Path) -> None:
    assert unpacked(tmp_path, "2026-12-02_11-00-00", tmp_path / "a") == {}
    (tmp_path / KEPT_SAVE_FILE).write_bytes(b"not a zip archive")
    assert unpacked(tmp_path, "2026-12-02_11-00-00", tmp_path / "b") == {}

"""Files written whole or not at all."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from scenetune import atomic


def test_a_write_replaces_the_file_only_when_whole(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    atomic.write_text(path, "first")
    with pytest.raises(RuntimeError), atomic.replaced_when_written(path) as partial:
        partial.write_text("half")
        raise RuntimeError("killed while writing")
    assert path.read_text() == "first"
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]  # no partial file left behind
    atomic.write_text(path, "second")
    assert path.read_text() == "second"


def test_a_writer_that_adds_its_own_extension_writes_the_named_file(tmp_path: Path) -> None:
    path = tmp_path / "cache.npz"
    with atomic.replaced_when_written(path, suffix=".npz") as partial:
        np.savez(partial, x=np.arange(3))
    with np.load(path) as saved:
        assert saved["x"].tolist() == [0, 1, 2]
    assert [p.name for p in tmp_path.iterdir()] == ["cache.npz"]

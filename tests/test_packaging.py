"""A non-editable install (`pip install .`, a wheel) carries every file the packages read at run time."""

from __future__ import annotations

import fnmatch

import pytest

from tests.conftest import REPO_ROOT

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

PACKAGES = ("scenetune", "search_spaces", "trainables", "analysis")


def test_every_data_file_of_the_packages_is_declared_as_package_data() -> None:
    config = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    declared = config.get("package-data", {})
    data_files = [
        (package, path.relative_to(REPO_ROOT / package).as_posix())
        for package in PACKAGES
        for path in (REPO_ROOT / package).rglob("*")
        if path.is_file() and path.suffix not in (".py", ".pyc") and "__pycache__" not in path.parts
    ]
    assert ("analysis", "published/study.csv") in data_files  # the study's numbers, read by `replicate`
    undeclared = [
        f"{package}/{name}"
        for package, name in data_files
        if not any(fnmatch.fnmatch(name, pattern) for pattern in declared.get(package, []))
    ]
    assert undeclared == []

"""The archive that carries the project tree to Dask workers without a shared filesystem."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("distributed")

from test_framework.execution.dask_tree import (
    KEEP_TREES,
    moved_setup,
    tree_archive,
    unpack,
)
from test_framework.execution.runner import WorkerSetup


def project(root: Path) -> Path:
    (root / "tests").mkdir(parents=True)
    (root / "tests" / "test_a.py").write_text("def test_a():\n    pass\n")
    (root / "docs").mkdir()
    (root / "docs" / "data.txt").write_text("read by a test\n")
    (root / "pyproject.toml").write_text("[tool.pytest.ini_options]\n")
    for skipped in (".git", ".venv", "tests/__pycache__", "pkg.egg-info", "env"):
        (root / skipped).mkdir(parents=True, exist_ok=True)
        (root / skipped / "junk.txt").write_text("not shipped\n")
    (root / "env" / "pyvenv.cfg").write_text("home = /usr\n")
    (root / "tests" / "test_a.cpython-311.pyc").write_bytes(b"\0")
    return root


def test_the_archive_carries_tests_and_data_and_leaves_out_caches_and_environments(
    tmp_path: Path,
) -> None:
    archive, digest = tree_archive(project(tmp_path / "p"))
    tree = unpack(archive, digest, tmp_path / "trees")
    files = sorted(str(p.relative_to(tree)) for p in tree.rglob("*") if p.is_file())
    assert files == ["docs/data.txt", "pyproject.toml", "tests/test_a.py"]
    assert (tree / "tests" / "test_a.py").read_text() == "def test_a():\n    pass\n"


def test_the_digest_names_the_content(tmp_path: Path) -> None:
    root = project(tmp_path / "p")
    _, first = tree_archive(root)
    (root / ".git" / "junk.txt").write_text("changed, but not shipped\n")
    assert tree_archive(root)[1] == first
    (root / "tests" / "test_a.py").write_text("def test_a():\n    assert 0\n")
    assert tree_archive(root)[1] != first


def test_a_worker_unpacks_a_tree_once_and_keeps_only_the_newest(tmp_path: Path) -> None:
    root = project(tmp_path / "p")
    base = tmp_path / "trees"
    archive, digest = tree_archive(root)
    first = unpack(archive, digest, base)
    (first / "marker").write_text("still the same folder\n")
    assert unpack(archive, digest, base) == first
    assert (first / "marker").exists()
    for index in range(KEEP_TREES + 1):
        (root / "tests" / "test_a.py").write_text(f"def test_a():\n    assert {index}\n")
        unpack(*tree_archive(root), base)
    assert len([p for p in base.iterdir() if p.is_dir()]) == KEEP_TREES
    assert not first.exists()


def test_a_shards_paths_move_to_the_unpacked_tree(tmp_path: Path) -> None:
    setup = WorkerSetup(
        rootdir="/home/me/project",
        cwd="/home/me/project",
        pytest_args=("--rootdir=/home/me/project", "-p", "no:cacheprovider"),
        env={"PYTHONPATH": "/home/me/project/src:/opt/lib", "OTHER": "/home/me/project2"},
        scratch_dir=tmp_path,
    )
    moved = moved_setup(setup, "/home/me/project", "/w/trees/abc")
    assert (moved.rootdir, moved.cwd) == ("/w/trees/abc", "/w/trees/abc")
    assert moved.pytest_args == ("--rootdir=/w/trees/abc", "-p", "no:cacheprovider")
    assert moved.env == {"PYTHONPATH": "/w/trees/abc/src:/opt/lib", "OTHER": "/home/me/project2"}

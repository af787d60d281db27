"""The project root is found as pytest finds its rootdir."""

from __future__ import annotations

from pathlib import Path

from test_framework.rootdir import find_rootdir, rebased


def test_the_nearest_folder_with_pytest_configuration_wins(tmp_path: Path) -> None:
    (tmp_path / "setup.py").write_text("", encoding="utf-8")
    project = tmp_path / "project"
    sub = project / "tests" / "unit"
    sub.mkdir(parents=True)
    (project / "tox.ini").write_text("[pytest]\naddopts = -q\n", encoding="utf-8")
    assert find_rootdir(sub) == project


def test_an_ini_file_that_does_not_configure_pytest_is_passed_over(tmp_path: Path) -> None:
    sub = tmp_path / "a" / "b"
    sub.mkdir(parents=True)
    (tmp_path / "a" / "setup.cfg").write_text("[metadata]\nname = x\n", encoding="utf-8")
    (tmp_path / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    assert find_rootdir(sub) == tmp_path


def test_then_a_pyproject_then_a_setup_py_then_the_ancestor(tmp_path: Path) -> None:
    sub = tmp_path / "a" / "b"
    sub.mkdir(parents=True)
    (tmp_path / "a" / "setup.py").write_text("", encoding="utf-8")
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n", encoding="utf-8")
    assert find_rootdir(sub) == tmp_path
    (tmp_path / "pyproject.toml").unlink()
    assert find_rootdir(sub) == tmp_path / "a"


def test_path_arguments_move_the_search_and_are_rebased_onto_the_root(tmp_path: Path) -> None:
    other = tmp_path / "other"
    (other / "tests").mkdir(parents=True)
    (other / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    (other / "tests" / "test_x.py").write_text("", encoding="utf-8")
    here = tmp_path / "elsewhere"
    here.mkdir()
    args = ["-k", "fast", "../other/tests/test_x.py::test_a"]
    root = find_rootdir(here, args)
    assert root == other
    assert rebased(args, here, root) == ("-k", "fast", "tests/test_x.py::test_a")

"""The project root when the user names none: found as pytest finds its rootdir, so a run from a
subfolder uses the project's configuration and its one store, and node ids are the ones pytest
prints.

pytest's rule (`_pytest.config.findpaths.determine_setup`): from the common ancestor of the
invocation folder's path arguments (else the invocation folder), the first folder upwards with
an ini file that configures pytest (`pytest.ini`, `.pytest.ini`, `pyproject.toml` with a
`[tool.pytest...]` table, `tox.ini` with `[pytest]`, `setup.cfg` with `[tool:pytest]`); else
the first with any `pyproject.toml`; else the first with a `setup.py`; else the ancestor.
"""

from __future__ import annotations

import configparser
import os
from collections.abc import Sequence
from pathlib import Path

from .toml_files import parse_toml


def find_rootdir(invocation: Path, pytest_args: Sequence[str] = ()) -> Path:
    ancestor = common_ancestor(invocation, path_arguments(invocation, pytest_args))
    folders = (ancestor, *ancestor.parents)
    for folder in folders:
        if any(_configures_pytest(folder / name) for name in _INI_NAMES):
            return folder
    for folder in folders:
        if (folder / "pyproject.toml").is_file():
            return folder
    for folder in folders:
        if (folder / "setup.py").is_file():
            return folder
    return ancestor


def path_arguments(invocation: Path, pytest_args: Sequence[str]) -> list[Path]:
    """The arguments that name existing files or folders (a node id's file part), absolute."""
    found = []
    for arg in pytest_args:
        if arg.startswith("-"):
            continue
        path = invocation / arg.split("::", 1)[0]
        if path.exists():
            found.append(path.resolve())
    return found


def common_ancestor(invocation: Path, paths: Sequence[Path]) -> Path:
    if not paths:
        return invocation.resolve()
    folders = [p if p.is_dir() else p.parent for p in paths]
    return Path(os.path.commonpath([str(f) for f in folders]))


def rebased(pytest_args: Sequence[str], invocation: Path, root: Path) -> tuple[str, ...]:
    """The arguments with each path made relative to `root` (pytest runs there), so a path
    typed in a subfolder names the same file."""
    if invocation.resolve() == root:
        return tuple(pytest_args)
    out = []
    for arg in pytest_args:
        head, sep, rest = arg.partition("::")
        path = invocation / head
        if arg.startswith("-") or not head or not path.exists():
            out.append(arg)
            continue
        relative = os.path.relpath(path.resolve(), root)
        out.append(f"{relative}{sep}{rest}")
    return tuple(out)


_INI_NAMES = ("pytest.ini", ".pytest.ini", "pyproject.toml", "tox.ini", "setup.cfg")


def _configures_pytest(path: Path) -> bool:
    if not path.is_file():
        return False
    if path.name in ("pytest.ini", ".pytest.ini"):
        return True
    try:
        if path.name == "pyproject.toml":
            tool = parse_toml(path.read_bytes()).get("tool", {})
            pytest_table = tool.get("pytest", {}) if isinstance(tool, dict) else {}
            return isinstance(pytest_table, dict) and bool(pytest_table)
        parser = configparser.ConfigParser(interpolation=None)
        parser.read(path, encoding="utf-8")
    except (OSError, ValueError, configparser.Error):
        return False
    section = "pytest" if path.name == "tox.ini" else "tool:pytest"
    return parser.has_section(section)

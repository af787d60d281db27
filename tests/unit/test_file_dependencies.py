"""What a test file depended on: its static imports, its conftest chain, the configuration, and
what it imported and read at run time, each with what it imports in turn."""

from __future__ import annotations

from pathlib import Path

from test_framework.fingerprint.dependencies import file_dependencies
from test_framework.fingerprint.imports import ImportGraph

PROJECT = {
    "pyproject.toml": "",
    "conftest.py": "from pkg import fixtures_support\n",
    "pkg/__init__.py": "",
    "pkg/fixtures_support.py": "",
    "pkg/leaf.py": "",
    "pkg/plugin.py": "from .leaf import *\n",
    "pkg/unrelated.py": "",
    "tests/conftest.py": "",
    "tests/test_a.py": "import importlib\n",
    "data/rows.json": "[]",
}


def test_static_conftest_config_runtime_and_reads_all_count(tmp_path: Path) -> None:
    for name, text in PROJECT.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    found = file_dependencies(
        tmp_path,
        "tests/test_a.py",
        ImportGraph(tmp_path),
        imports=("importlib", "pkg.plugin"),  # the second by a computed name, at run time
        reads=("data/rows.json",),
    )
    assert found == {
        "tests/test_a.py",
        "conftest.py",
        "tests/conftest.py",
        "pkg/__init__.py",
        "pkg/fixtures_support.py",
        "pkg/plugin.py",
        "pkg/leaf.py",
        "pyproject.toml",
        "data/rows.json",
    }

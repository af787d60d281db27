"""The static import graph: which project files a test file runs when imported."""

from __future__ import annotations

from pathlib import Path

from test_framework.fingerprint.imports import ImportGraph, imported_names


def make(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


PROJECT = {
    "pkg/__init__.py": "",
    "pkg/leaf.py": "VALUE = 1\n",
    "pkg/mid.py": "from .leaf import VALUE\n",
    "pkg/other.py": "X = 2\n",
    "pkg/sub/__init__.py": "from ..other import X\n",
    "pkg/sub/deep.py": "import pkg.leaf\n",
    "tests/helpers.py": "from pkg import other\n",
    "tests/test_mid.py": "from pkg import mid\n",
    "tests/test_deep.py": "def test_it():\n    import pkg.sub.deep\n",
    "tests/test_helpers.py": "from helpers import other\n",
    "tests/test_dynamic.py": "import importlib\nm = importlib.import_module('pkg.' + 'leaf')\n",
}


def rel(root: Path, files: frozenset[Path]) -> set[str]:
    return {p.relative_to(root).as_posix() for p in files}


def test_a_test_file_depends_on_what_it_imports_transitively(tmp_path: Path) -> None:
    make(tmp_path, PROJECT)
    graph = ImportGraph(tmp_path)
    assert rel(tmp_path, graph.closure(tmp_path / "tests/test_mid.py")) == {
        "pkg/__init__.py",
        "pkg/mid.py",
        "pkg/leaf.py",
    }


def test_packages_run_on_the_way_and_imports_inside_functions_count(tmp_path: Path) -> None:
    make(tmp_path, PROJECT)
    graph = ImportGraph(tmp_path)
    assert rel(tmp_path, graph.closure(tmp_path / "tests/test_deep.py")) == {
        "pkg/__init__.py",
        "pkg/sub/__init__.py",
        "pkg/sub/deep.py",
        "pkg/leaf.py",
        "pkg/other.py",
    }


def test_a_sibling_module_is_found_in_the_test_files_base_folder(tmp_path: Path) -> None:
    make(tmp_path, PROJECT)
    graph = ImportGraph(tmp_path)
    assert rel(tmp_path, graph.closure(tmp_path / "tests/test_helpers.py")) == {
        "tests/helpers.py",
        "pkg/__init__.py",
        "pkg/other.py",
    }


def test_a_computed_import_is_not_seen_statically(tmp_path: Path) -> None:
    make(tmp_path, PROJECT)
    graph = ImportGraph(tmp_path)
    assert graph.closure(tmp_path / "tests/test_dynamic.py") == frozenset()


def test_a_src_layout_resolves_under_src(tmp_path: Path) -> None:
    make(
        tmp_path,
        {"src/lib/__init__.py": "", "src/lib/core.py": "", "t/test_a.py": "import lib.core\n"},
    )
    graph = ImportGraph(tmp_path)
    assert rel(tmp_path, graph.closure(tmp_path / "t/test_a.py")) == {
        "src/lib/__init__.py",
        "src/lib/core.py",
    }


def test_relative_imports_resolve_against_the_package() -> None:
    assert imported_names("from . import a\nfrom ..b import c\n", "p.q.r", False) == {
        "p.q",
        "p.q.a",
        "p.b",
        "p.b.c",
    }

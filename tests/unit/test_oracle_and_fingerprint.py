"""The oracle's reduction of pytest's reports, and the collection fingerprint's sensitivity."""

from __future__ import annotations

import os
import time
from pathlib import Path

from test_framework.fingerprint import collection_fingerprint, project_files
from test_framework.oracle import differences, outcomes_from_records

RECORDS = [
    ("test_a.py::test_ok", ""),
    ("test_a.py::test_ok", "passed"),
    ("test_a.py::test_ok", ""),
    ("test_a.py::test_bad", "failed"),
    ("test_a.py::test_teardown", "passed"),
    ("test_a.py::test_teardown", "error"),
    ("test_a.py::test_skip", "skipped"),
    ("test_a.py::test_xf", "xfailed"),
    ("test_a.py::test_xp", "xpassed"),
    ("test_a.py::test_sub", "subtests passed"),
    ("test_a.py::test_sub", "failed"),
    ("test_a.py::test_sub", "failed"),
    ("test_b.py::test_p[a b::c]", "passed"),
    ("test_broken.py", "error"),
    ("test_skipped_module.py", "skipped"),
]


def test_the_oracle_reduces_each_tests_reports_to_one_outcome() -> None:
    assert outcomes_from_records(RECORDS) == {
        "test_a.py::test_ok": "passed",
        "test_a.py::test_bad": "failed",
        "test_a.py::test_teardown": "error",
        "test_a.py::test_skip": "skipped",
        "test_a.py::test_xf": "xfailed",
        "test_a.py::test_xp": "xpassed",
        "test_a.py::test_sub": "failed",
        "test_b.py::test_p[a b::c]": "passed",
        "test_broken.py": "error",
        "test_skipped_module.py": "skipped",
    }


def test_differences_name_each_disagreement() -> None:
    assert differences({"a": "passed", "b": "failed"}, {"a": "passed", "c": "passed"}) == [
        "b: pytest failed, engine (absent)",
        "c: pytest (absent), engine passed",
    ]


def test_fingerprint_changes_with_any_source_edit_or_new_file(tmp_path: Path) -> None:
    (tmp_path / "test_a.py").write_text("def test_a(): pass\n", encoding="utf-8")
    (tmp_path / "helper.py").write_text("X = 1\n", encoding="utf-8")
    first = collection_fingerprint(tmp_path, ("q",), {})
    assert collection_fingerprint(tmp_path, ("q",), {}) == first
    assert collection_fingerprint(tmp_path, ("other",), {}) != first
    assert collection_fingerprint(tmp_path, ("q",), {"PYTEST_ADDOPTS": "-x"}) != first
    later = time.time() + 5
    (tmp_path / "helper.py").write_text("X = 2\n", encoding="utf-8")
    os.utime(tmp_path / "helper.py", (later, later))
    edited = collection_fingerprint(tmp_path, ("q",), {})
    assert edited != first
    (tmp_path / "test_new.py").write_text("def test_n(): pass\n", encoding="utf-8")
    assert collection_fingerprint(tmp_path, ("q",), {}) != edited


def test_project_files_skip_caches_and_virtualenvs(tmp_path: Path) -> None:
    (tmp_path / "venv").mkdir()
    (tmp_path / "venv" / "pyvenv.cfg").write_text("", encoding="utf-8")
    (tmp_path / "venv" / "x.py").write_text("", encoding="utf-8")
    (tmp_path / "myenv").mkdir()
    (tmp_path / "myenv" / "pyvenv.cfg").write_text("", encoding="utf-8")
    (tmp_path / "myenv" / "y.py").write_text("", encoding="utf-8")
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "z.py").write_text("", encoding="utf-8")
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "mod.py").write_text("", encoding="utf-8")
    (tmp_path / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    found = sorted(p.relative_to(tmp_path).as_posix() for p in project_files(tmp_path))
    assert found == ["pkg/mod.py", "pytest.ini"]

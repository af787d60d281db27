"""pytest's `--lf` record, as the engine updates it from a run's final results (pytest's
LFPlugin rules)."""

from __future__ import annotations

import json
from pathlib import Path

from test_framework.models import Outcome, TestResult
from test_framework.reporting.pytest_cache import updated, write_pytest_cache


def result(nodeid: str, outcome: Outcome) -> TestResult:
    return TestResult(nodeid, outcome, 0.0)


def test_failures_are_recorded_and_passes_skips_and_cached_tests_dropped() -> None:
    before = {"t.py::passes_now": True, "t.py::cached": True, "t.py::not_run": True}
    after = updated(
        before,
        [
            result("t.py::passes_now", Outcome.PASSED),
            result("t.py::cached", Outcome.CACHED),
            result("t.py::skipped", Outcome.SKIPPED),
            result("t.py::fails", Outcome.FAILED),
            result("t.py::errors", Outcome.ERROR),
            result("t.py::crashed", Outcome.CRASHED),
            result("t.py::not_run", Outcome.NOT_RUN),
        ],
    )
    assert after == {
        "t.py::not_run": True,  # nothing learnt: kept
        "t.py::fails": True,
        "t.py::errors": True,
        "t.py::crashed": True,
    }


def test_a_file_that_collects_again_is_replaced_by_its_tests() -> None:
    after = updated(
        {"fixed.py": True},
        [result("fixed.py::a", Outcome.NOT_RUN), result("fixed.py::b", Outcome.PASSED)],
    )
    assert after == {"fixed.py::a": True}
    assert updated({}, [result("broken.py", Outcome.ERROR)]) == {"broken.py": True}


def test_the_record_is_written_as_pytest_writes_it(tmp_path: Path) -> None:
    folder = tmp_path / ".pytest_cache"
    (folder / "v/cache").mkdir(parents=True)
    (folder / "v/cache/nodeids").write_text('["old.py::y"]')
    write_pytest_cache(folder, [result("t.py::x", Outcome.FAILED)])
    assert json.loads((folder / "v/cache/lastfailed").read_text()) == {"t.py::x": True}
    assert json.loads((folder / "v/cache/nodeids").read_text()) == ["old.py::y", "t.py::x"]
    other = tmp_path / "fresh"
    write_pytest_cache(other, [result("t.py::x", Outcome.FAILED)])
    assert (other / ".gitignore").read_text().endswith("*\n")
    assert (other / "CACHEDIR.TAG").read_text().startswith("Signature: 8a477f597d28d172")

"""pytest's terminal-summary sections, from results: the `-r` rules, folded skips, the
durations cut-off and warnings grouped by message."""

from __future__ import annotations

from test_framework.events import WarningRecorded
from test_framework.models import Outcome, PhaseReport, Terminal, TestResult
from test_framework.reporting.sections import (
    report_chars,
    short_summary,
    slowest_durations,
    unique_warnings,
    warnings_summary,
)


def result(nodeid: str, outcome: Outcome, *reports: PhaseReport) -> TestResult:
    return TestResult(nodeid, outcome, sum(r.duration for r in reports), reports=reports)


def phase(
    nodeid: str, when: str, category: str, duration: float = 0.0, **extra: str
) -> PhaseReport:
    outcome = {"error": "failed", "xfailed": "skipped"}.get(category, category or "passed")
    return PhaseReport(nodeid, when, outcome, category, duration, **extra)  # type: ignore[arg-type]


def test_report_chars_follow_pytests_getreportopt() -> None:
    assert report_chars("fE") == "wfE"
    assert report_chars("a") == "wsxXEf"
    assert report_chars("A") == "wPpsxXEf"
    assert report_chars("fsN") == "w"
    assert report_chars("FS", warnings_disabled=True) == "fs"


def test_the_short_summary_lists_failures_before_errors_and_only_what_was_asked() -> None:
    results = [
        result("t.py::a", Outcome.ERROR, phase("t.py::a", "setup", "error", longrepr="E   boom")),
        result("t.py::b", Outcome.FAILED, phase("t.py::b", "call", "failed", longrepr="E   no")),
        result("t.py::c", Outcome.PASSED, phase("t.py::c", "call", "passed")),
    ]
    assert short_summary(results, "wfE") == ["FAILED t.py::b - no", "ERROR t.py::a - boom"]
    assert short_summary(results, "p") == ["PASSED t.py::c"]
    assert short_summary(results, "") == []


def test_a_plain_pass_without_reports_is_listed_as_passed() -> None:
    """A pass that said nothing travels as its duration alone; `-rA` still lists it."""
    results = [
        TestResult("t.py::plain", Outcome.PASSED, 0.01),
        result("t.py::loud", Outcome.PASSED, phase("t.py::loud", "call", "passed")),
        TestResult("t.py::cached", Outcome.CACHED, 0.0),
    ]
    assert short_summary(results, "p") == ["PASSED t.py::plain", "PASSED t.py::loud"]


def test_skips_fold_by_place_and_reason_and_subtests_keep_their_word() -> None:
    results = [
        result(
            f"t.py::{name}",
            Outcome.SKIPPED,
            phase(f"t.py::{name}", "setup", "skipped", longrepr="Skipped: later", where="t.py:3"),
        )
        for name in "ab"
    ] + [
        result(
            "t.py::s",
            Outcome.FAILED,
            phase("t.py::s", "call", "failed", longrepr="E   1 != 1", word="SUBFAILED[n] (n=1)"),
        )
    ]
    assert short_summary(results, "sf") == [
        "SKIPPED [2] t.py:3: later",
        "SUBFAILED[n] (n=1) t.py::s - 1 != 1",
    ]


def test_the_engines_own_verdicts_are_listed_whatever_r_says() -> None:
    crashed = TestResult("t.py::x", Outcome.CRASHED, 0.0, message="the worker died")
    assert short_summary([crashed], "") == ["CRASHED t.py::x - the worker died"]


def test_durations_below_the_minimum_are_hidden_unless_very_verbose() -> None:
    results = [
        result("t.py::slow", Outcome.PASSED, phase("t.py::slow", "call", "passed", 0.5)),
        result("t.py::fast", Outcome.PASSED, phase("t.py::fast", "call", "passed", 0.001)),
    ]
    title, lines = slowest_durations(results, Terminal(durations=0), verbose=0)
    assert title == "slowest durations"
    assert lines == [
        "0.50s call     t.py::slow",
        "",
        "(1 durations < 0.005s hidden.  Use -vv to show these durations.)",
    ]
    _, lines = slowest_durations(results, Terminal(durations=1), verbose=2)
    assert lines == ["0.50s call     t.py::slow"]


def test_warnings_group_by_message_and_collapse_past_ten_places() -> None:
    text = "t.py:3: UserWarning: careful\n  warnings.warn('careful')\n"
    many = [WarningRecorded(1, f"t.py::t{n}", "call", text) for n in range(10)]
    twice = unique_warnings([*many, many[0]])
    assert len(twice) == 10
    assert warnings_summary(twice)[:3] == [
        "t.py: 10 warnings",
        "  t.py:3: UserWarning: careful\n    warnings.warn('careful')",
        "",
    ]
    at_import = WarningRecorded(None, "", "collect", "x.py:1: DeprecationWarning: old\n", "x.py:1")
    assert warnings_summary([at_import])[:2] == ["x.py:1", "  x.py:1: DeprecationWarning: old"]

"""Reporting: the pure counting rules, and the console, JSON, JUnit and plan subscribers.

Reporters are driven the way the run drives them, by calling them with events; the console writes
to a StringIO and the file reports to `tmp_path`, and what they produce is parsed back, not grepped.
"""

from __future__ import annotations

import io
import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest

from test_framework.events import (
    CapacityChanged,
    Event,
    RunContext,
    RunFinished,
    RunStarted,
    ShardFinished,
    TestFinished,
    TestRetrying,
    WarningRecorded,
)
from test_framework.exit_codes import ExitCode
from test_framework.models import Outcome, PhaseReport, Plan, RunSummary, Shard, TestResult
from test_framework.outcomes import count_outcomes, exit_code_for, summary_words
from test_framework.planning import explicit_selection
from test_framework.reporting.console import ConsoleReporter
from test_framework.reporting.json_report import JsonReportBuilder
from test_framework.reporting.junit import JUnitReportBuilder, junit_names
from test_framework.reporting.plan import PlanPrinter
from test_framework.worker.selection import FileSlice

ROOT = "/projects/demo"
BAD_LONGREPR = (
    "def test_bad():\n"
    ">       assert 1 == 2\n"
    "E       assert 1 == 2\n"
    "E        +  where 1 = one()\n"
    "\n"
    "tests/test_a.py:3: AssertionError"
)


@pytest.fixture
def anyio_backend() -> str:
    # No async tests here today; pinned anyway so one added later runs on asyncio like the rest.
    return "asyncio"


# --- helpers ---------------------------------------------------------------------------------


def phase(
    nodeid: str,
    when: str,
    outcome: str,
    category: str,
    *,
    longrepr: str = "",
    sections: Iterable[tuple[str, str]] = (),
) -> PhaseReport:
    return PhaseReport(
        nodeid, when, outcome, category, 0.01, longrepr=longrepr, sections=tuple(sections)
    )


def passed(nodeid: str, duration: float = 0.01) -> TestResult:
    reports = (
        phase(nodeid, "setup", "passed", ""),
        phase(nodeid, "call", "passed", "passed"),
        phase(nodeid, "teardown", "passed", ""),
    )
    return TestResult(nodeid, Outcome.PASSED, duration, reports=reports, shard_id=0)


def failed(
    nodeid: str,
    longrepr: str = BAD_LONGREPR,
    *,
    sections: Iterable[tuple[str, str]] = (),
    attempt: int = 1,
) -> TestResult:
    reports = (
        phase(nodeid, "setup", "passed", ""),
        phase(nodeid, "call", "failed", "failed", longrepr=longrepr, sections=sections),
        phase(nodeid, "teardown", "passed", ""),
    )
    return TestResult(nodeid, Outcome.FAILED, 0.02, attempt=attempt, reports=reports, shard_id=0)


def bare(nodeid: str, outcome: Outcome, message: str = "", duration: float = 0.0) -> TestResult:
    """A result the engine made itself (crash, timeout, not run): no pytest reports."""
    return TestResult(nodeid, outcome, duration, message=message, shard_id=1)


def summary(results: Iterable[TestResult], *, duration: float = 0.12, **kw: Any) -> RunSummary:
    results = tuple(results)
    interrupted = kw.pop("interrupted", False)
    return RunSummary(
        run_id="run-1",
        results=results,
        counts=count_outcomes(results),
        duration=duration,
        exit_code=int(exit_code_for(results, interrupted=interrupted)),
        interrupted=interrupted,
        **kw,
    )


def run_started(plan: Plan | None = None) -> RunStarted:
    plan = plan or Plan(shards=(), known_durations=0)
    return RunStarted(RunContext("run-1", ROOT, "fast", ("unit",)), plan, capacity=2)


def drive(subscriber: Callable[[Event], None], events: Iterable[Event]) -> None:
    for event in events:
        subscriber(event)


# --- outcomes.py: counts, words, exit codes ---------------------------------------------------


def test_teardown_error_after_a_pass_counts_as_passed_and_error_like_pytest() -> None:
    nodeid = "t.py::test_x"
    result = TestResult(
        nodeid,
        Outcome.ERROR,
        0.1,
        reports=(
            phase(nodeid, "setup", "passed", ""),
            phase(nodeid, "call", "passed", "passed"),
            phase(nodeid, "teardown", "failed", "error", longrepr="E   RuntimeError"),
        ),
    )
    counts = count_outcomes([result, passed("t.py::test_y")])
    assert counts == {"passed": 2, "error": 1}
    assert summary_words(counts) == ["2 passed", "1 error"]


def test_error_word_is_plural_above_one() -> None:
    assert summary_words({"error": 2}) == ["2 errors"]
    assert summary_words({"error": 1}) == ["1 error"]


def test_engine_outcomes_are_counted_by_their_own_word() -> None:
    # A flaky test's last attempt passed, but the count must say "flaky", not "passed"; crashes,
    # timeouts and tests never run have no pytest category at all.
    flaky = TestResult(
        "t.py::f",
        Outcome.FLAKY,
        0.1,
        attempt=2,
        reports=(phase("t.py::f", "call", "passed", "passed"),),
    )
    results = [
        flaky,
        bare("t.py::c", Outcome.CRASHED),
        bare("t.py::t", Outcome.TIMEOUT),
        bare("t.py::n1", Outcome.NOT_RUN),
        bare("t.py::n2", Outcome.NOT_RUN),
    ]
    counts = count_outcomes(results)
    assert counts == {"flaky": 1, "crashed": 1, "timeout": 1, "not_run": 2}
    assert summary_words(counts) == ["1 flaky", "1 crashed", "1 timeout", "2 not run"]


def test_result_without_reports_is_counted_by_its_outcome() -> None:
    assert count_outcomes([bare("t.py::s", Outcome.SKIPPED), bare("t.py::x", Outcome.XFAILED)]) == {
        "skipped": 1,
        "xfailed": 1,
    }


def test_summary_words_follow_pytest_order_then_ours_then_unknown_sorted() -> None:
    counts = {
        "zeta": 1,
        "crashed": 1,
        "error": 1,
        "passed": 2,
        "failed": 1,
        "skipped": 0,
        "alpha": 3,
    }
    # Zero counts are left out; words pytest knows come first, in pytest's order.
    assert summary_words(counts) == [
        "1 failed",
        "2 passed",
        "1 error",
        "1 crashed",
        "3 alpha",
        "1 zeta",
    ]


def test_exit_code_zero_when_nothing_failed() -> None:
    results = [
        passed("t.py::a"),
        bare("t.py::s", Outcome.SKIPPED),
        bare("t.py::x", Outcome.XFAILED),
    ]
    assert exit_code_for(results, interrupted=False) is ExitCode.OK


@pytest.mark.parametrize(
    "outcome",
    # A test not run (a session timeout in a backoff pause) leaves the answer incomplete.
    [Outcome.FAILED, Outcome.ERROR, Outcome.CRASHED, Outcome.TIMEOUT, Outcome.NOT_RUN],
)
def test_exit_code_one_when_any_test_fails(outcome: Outcome) -> None:
    results = [passed("t.py::a"), bare("t.py::b", outcome)]
    assert exit_code_for(results, interrupted=False) is ExitCode.TESTS_FAILED


def test_exit_code_two_when_interrupted_even_with_failures() -> None:
    assert exit_code_for([failed("t.py::a")], interrupted=True) is ExitCode.INTERRUPTED
    assert exit_code_for([], interrupted=True) is ExitCode.INTERRUPTED


def test_exit_code_five_when_no_tests() -> None:
    assert exit_code_for([], interrupted=False) is ExitCode.NO_TESTS_COLLECTED
    assert int(ExitCode.NO_TESTS_COLLECTED) == 5


def test_flaky_passes_unless_asked_to_fail() -> None:
    results = [bare("t.py::f", Outcome.FLAKY)]
    assert exit_code_for(results, interrupted=False) is ExitCode.OK
    assert exit_code_for(results, interrupted=False, flaky_fails=True) is ExitCode.TESTS_FAILED


# --- console ---------------------------------------------------------------------------------


def console_output(events: Iterable[Event], verbose: int = 0) -> str:
    stream = io.StringIO()
    drive(ConsoleReporter(stream, verbose=verbose, tty=False), events)
    return stream.getvalue()


def test_console_closing_line_is_pytest_like() -> None:
    results = [failed("t.py::bad"), passed("t.py::a"), passed("t.py::b")]
    out = console_output([run_started(), RunFinished(summary(results, duration=0.12))])
    last = out.splitlines()[-1]
    assert re.fullmatch(r"=+ 1 failed, 2 passed in 0\.12s =+", last), last
    assert len(last) == 80  # not a TTY: a fixed width, so CI logs line up


def test_console_closing_line_when_nothing_ran_and_when_interrupted() -> None:
    out = console_output([RunFinished(summary([], duration=0.0))])
    assert re.fullmatch(r"=+ no tests ran in 0\.00s =+", out.splitlines()[-1])
    out = console_output([RunFinished(summary([passed("t.py::a")], interrupted=True))])
    assert re.fullmatch(r"=+ 1 passed in 0\.12s \(interrupted\) =+", out.splitlines()[-1])


def test_console_failures_section_shows_banner_longrepr_and_captured_output() -> None:
    nodeid = "tests/test_a.py::test_bad"
    result = failed(
        nodeid,
        sections=[
            ("Captured stdout call", "hello from the test\n"),
            ("Captured log call", "WARN x"),
        ],
    )
    out = console_output([run_started(), RunFinished(summary([result, passed("t.py::ok")]))])
    lines = out.splitlines()
    failures = lines.index(next(line for line in lines if " FAILURES " in line))
    assert set(lines[failures].replace(" FAILURES ", "")) == {"="}
    # The per-test banner is the node id between underscores, as pytest draws it.
    assert re.fullmatch(rf"_+ {re.escape(nodeid)} _+", lines[failures + 1])
    body = "\n".join(lines[failures + 2 :])
    assert BAD_LONGREPR in body
    assert re.search(r"^-+ Captured stdout call -+\nhello from the test$", body, re.M)
    assert re.search(r"^-+ Captured log call -+\nWARN x$", body, re.M)
    # Passing tests have no place in the failures section.
    assert "t.py::ok" not in body.split("short test summary info")[0]


def test_console_short_summary_names_the_test_and_its_E_line() -> None:
    nodeid = "tests/test_a.py::test_bad"
    out = console_output([RunFinished(summary([failed(nodeid), passed("t.py::ok")]))])
    lines = out.splitlines()
    start = lines.index(next(line for line in lines if "short test summary info" in line))
    # The first `E` line, without the `E` and its indent, like pytest's -rf line.
    assert lines[start + 1] == f"FAILED {nodeid} - assert 1 == 2"
    assert not any(line.startswith("PASSED") for line in lines)


def test_console_short_summary_prefers_the_engine_message_and_lists_flaky() -> None:
    crashed = bare("t.py::boom", Outcome.CRASHED, message="worker died (signal 9)")
    flaky = bare("t.py::f", Outcome.FLAKY)
    out = console_output([RunFinished(summary([crashed, flaky]))])
    assert "CRASHED t.py::boom - worker died (signal 9)" in out.splitlines()
    assert "FLAKY t.py::f" in out.splitlines()
    # A flaky test finally passed: it is listed in the summary but has no failure to show.
    failures_part = out.split("short test summary info")[0]
    assert "t.py::f" not in failures_part


def test_console_plain_lines_for_retries_and_shards_when_not_a_tty() -> None:
    plan = Plan(
        shards=(Shard(0, ("t.py::a", "t.py::b"), 1.0, explicit_selection(("t.py::a", "t.py::b"))),),
        known_durations=0,
    )
    events: list[Event] = [
        run_started(plan),
        TestRetrying(result=failed("t.py::a"), next_attempt=2, delay=0.5),
        TestFinished(passed("t.py::a")),
        TestFinished(passed("t.py::b")),
        ShardFinished(shard_id=0, returncode=0, duration=1.0),
        ShardFinished(shard_id=2, returncode=0, duration=0.5),  # the retry's
    ]
    out = console_output(events)
    lines = out.splitlines()
    assert "collected 2 tests in 1 shard, 2 workers to start, 0 durations known" in lines
    assert "RETRY t.py::a (failed, attempt 1; again in 0.50s)" in lines
    assert "[2/2] shard 0 finished in 1.00s" in lines
    # A shard the plan did not announce says where it came from.
    assert "[2/2] shard 2 (made during the run) finished in 0.50s" in lines
    assert "\r" not in out  # no in-place redraws outside a terminal


def test_console_verbose_prints_one_line_per_test() -> None:
    out = console_output(
        [TestFinished(passed("t.py::a")), TestFinished(bare("t.py::n", Outcome.NOT_RUN))],
        verbose=1,
    )
    assert out.splitlines() == ["t.py::a PASSED", "t.py::n NOT RUN"]


# --- JSON report ------------------------------------------------------------------------------


def test_json_report_has_every_test_counts_and_failed_attempts(tmp_path: Path) -> None:
    path = tmp_path / "report.json"
    first = failed("t.py::flaky", longrepr="E   assert 0")
    results = [
        passed("t.py::ok", duration=0.25),
        failed("t.py::bad"),
        TestResult("t.py::flaky", Outcome.FLAKY, 0.1, attempt=2, shard_id=0),
        bare("t.py::boom", Outcome.CRASHED, message="worker died"),
    ]
    builder = JsonReportBuilder(path)
    drive(
        builder,
        [
            run_started(),
            CapacityChanged(2, 3, "cpu idle", 10.0, 1 << 30, 5, at=7.0),
            TestRetrying(result=first, next_attempt=2, delay=0.1),
            RunFinished(summary(results, errors=("store: disk full",))),
        ],
    )
    assert builder.written
    doc = json.loads(path.read_text(encoding="utf-8"))
    assert doc["schema"] == 2
    assert doc["run_id"] == "run-1"
    assert doc["exit_code"] == 1
    assert doc["project_root"] == ROOT
    assert (doc["profile"], doc["categories"]) == ("fast", ["unit"])
    assert doc["summary"] == {"passed": 1, "failed": 1, "flaky": 1, "crashed": 1}
    tests = {t["nodeid"]: t for t in doc["tests"]}
    assert {n: t["outcome"] for n, t in tests.items()} == {
        "t.py::ok": "passed",
        "t.py::bad": "failed",
        "t.py::flaky": "flaky",
        "t.py::boom": "crashed",
    }
    assert tests["t.py::bad"]["longrepr"] == BAD_LONGREPR
    assert tests["t.py::boom"]["message"] == "worker died"
    assert tests["t.py::flaky"]["attempts"] == 2
    assert tests["t.py::flaky"]["failed_attempts"] == [
        {"attempt": 1, "outcome": "failed", "duration": 0.02, "longrepr": "E   assert 0"}
    ]
    assert tests["t.py::ok"]["failed_attempts"] == []
    assert doc["capacity"] == [{"t": 7.0, "old": 2, "new": 3, "reason": "cpu idle"}]
    assert doc["warnings"] == ["store: disk full"]
    # Written atomically: only the report is left in the folder, no temporary file.
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_json_report_is_written_only_at_run_end(tmp_path: Path) -> None:
    path = tmp_path / "report.json"
    builder = JsonReportBuilder(path)
    drive(builder, [run_started(), TestFinished(passed("t.py::a"))])
    assert not path.exists()
    assert not builder.written


# --- JUnit XML --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("nodeid", "expected"),
    [
        ("tests/unit/test_a.py::TestX::test_y[1]", ("tests.unit.test_a.TestX", "test_y[1]")),
        ("tests/test_a.py::test_y", ("tests.test_a", "test_y")),
        ("test_a.py::TestX::TestInner::test_y", ("test_a.TestX.TestInner", "test_y")),
        ("tests/test_a.py::test_y[a/b-1.5]", ("tests.test_a", "test_y[a/b-1.5]")),
    ],
)
def test_junit_names_follow_pytest(nodeid: str, expected: tuple[str, str]) -> None:
    assert junit_names(nodeid) == expected


def test_junit_names_keep_double_colons_inside_parameter_ids() -> None:
    assert junit_names("tests/test_w.py::test_id[a::b]") == ("tests.test_w", "test_id[a::b]")


def render_junit(tmp_path: Path, events: Iterable[Event]) -> ET.Element:
    path = tmp_path / "junit.xml"
    builder = JUnitReportBuilder(path)
    drive(builder, events)
    assert builder.written
    return ET.parse(path).getroot()  # raises if the XML is not well formed


def test_junit_counts_and_one_element_per_outcome(tmp_path: Path) -> None:
    results = [
        passed("t.py::ok"),
        failed("t.py::bad"),
        TestResult("t.py::err", Outcome.ERROR, 0.1, message="fixture broke"),
        bare("t.py::skip", Outcome.SKIPPED, message="no db"),
        bare("t.py::xf", Outcome.XFAILED),
        bare("t.py::crash", Outcome.CRASHED, message="worker died"),
        bare("t.py::slow", Outcome.TIMEOUT, message="timed out after 5s"),
        bare("t.py::never", Outcome.NOT_RUN),
        bare("t.py::xp", Outcome.XPASSED),
    ]
    root = render_junit(tmp_path, [RunFinished(summary(results))])
    suite = root.find("testsuite")
    assert suite is not None
    assert suite.attrib["tests"] == "9"
    assert suite.attrib["failures"] == "3"  # failed, crashed, timeout
    assert suite.attrib["errors"] == "1"
    assert suite.attrib["skipped"] == "3"  # skipped, xfailed, not run
    children = {
        case.attrib["name"]: [child.tag for child in case] for case in suite.iter("testcase")
    }
    assert children == {
        "ok": [],
        "bad": ["failure"],
        "err": ["error"],
        "skip": ["skipped"],
        "xf": ["skipped"],
        "crash": ["failure"],
        "slow": ["failure"],
        "never": ["skipped"],
        "xp": [],
    }
    bad = suite.find("testcase[@name='bad']/failure")
    assert bad is not None
    assert bad.attrib["message"] == "assert 1 == 2"
    assert bad.text == BAD_LONGREPR
    crash = suite.find("testcase[@name='crash']/failure")
    assert crash is not None
    assert crash.attrib["message"] == "worker died"
    xfail = suite.find("testcase[@name='xf']/skipped")
    assert xfail is not None
    assert xfail.attrib["type"] == "pytest.xfail"


def test_junit_flaky_test_carries_flaky_failure(tmp_path: Path) -> None:
    first = failed("t.py::flaky", longrepr="E   ConnectionError: reset\nmore")
    final = TestResult("t.py::flaky", Outcome.FLAKY, 0.1, attempt=2)
    root = render_junit(
        tmp_path,
        [TestRetrying(result=first, next_attempt=2, delay=0.1), RunFinished(summary([final]))],
    )
    case = root.find("testsuite/testcase[@name='flaky']")
    assert case is not None
    assert [child.tag for child in case] == ["flakyFailure"]
    flaky = case[0]
    assert flaky.attrib["message"] == "ConnectionError: reset"
    assert flaky.text == "E   ConnectionError: reset\nmore"
    # A flaky test passed in the end: CI must not count it as a failure.
    assert root.find("testsuite").attrib["failures"] == "0"  # type: ignore[union-attr]


def test_junit_failed_after_retries_carries_rerun_failures(tmp_path: Path) -> None:
    first = failed("t.py::bad", longrepr="E   first try")
    final = failed("t.py::bad", attempt=2)
    root = render_junit(
        tmp_path,
        [TestRetrying(result=first, next_attempt=2, delay=0.1), RunFinished(summary([final]))],
    )
    case = root.find("testsuite/testcase[@name='bad']")
    assert case is not None
    assert [child.tag for child in case] == ["failure", "rerunFailure"]
    assert case[1].attrib["message"] == "first try"


def test_junit_escapes_control_characters_so_the_xml_parses(tmp_path: Path) -> None:
    # Colour codes and NULs from test output are common; XML 1.0 forbids them.
    longrepr = "E   assert '\x1b[31mred\x1b[0m' == 'x\x00y'\x08"
    result = failed(
        "t.py::bad",
        longrepr=longrepr,
        sections=[("Captured stdout call", "out\x07put\x0b")],
    )
    skipped = TestResult(
        "t.py::skip",
        Outcome.SKIPPED,
        0.0,
        message="",
        reports=(
            phase("t.py::skip", "setup", "skipped", "skipped", longrepr="E   skip \x1b reason"),
        ),
    )
    root = render_junit(tmp_path, [RunFinished(summary([result, skipped]))])
    failure = root.find("testsuite/testcase[@name='bad']/failure")
    assert failure is not None
    assert failure.text == "E   assert '#x1B[31mred#x1B[0m' == 'x#x00y'#x08"
    assert failure.attrib["message"] == "assert '#x1B[31mred#x1B[0m' == 'x#x00y'#x08"
    out = root.find("testsuite/testcase[@name='bad']/system-out")
    assert out is not None
    assert out.text == "--- Captured stdout call ---\nout#x07put#x0B"
    skip = root.find("testsuite/testcase[@name='skip']/skipped")
    assert skip is not None
    assert skip.attrib["message"] == "skip #x1B reason"


def test_junit_escapes_control_characters_in_rerun_failure_message(tmp_path: Path) -> None:
    first = failed("t.py::bad", longrepr="E   \x1b[31mred\x1b[0m")
    final = failed("t.py::bad", attempt=2)
    root = render_junit(
        tmp_path,
        [TestRetrying(result=first, next_attempt=2, delay=0.1), RunFinished(summary([final]))],
    )
    rerun = root.find("testsuite/testcase[@name='bad']/rerunFailure")
    assert rerun is not None
    assert rerun.attrib["message"] == "#x1B[31mred#x1B[0m"


def test_junit_escapes_non_characters(tmp_path: Path) -> None:
    result = failed("t.py::bad", longrepr="E   bad byte \uffff here")
    root = render_junit(tmp_path, [RunFinished(summary([result]))])
    failure = root.find("testsuite/testcase[@name='bad']/failure")
    assert failure is not None
    assert failure.text == "E   bad byte #xFFFF here"


# --- plan printer -----------------------------------------------------------------------------


def test_plan_printer_lists_each_shard_and_its_node_ids() -> None:
    plan = Plan(
        shards=(
            Shard(0, ("tests/test_a.py::test_slow",), 2.5, (FileSlice("tests/test_a.py", 0, 1),)),
            Shard(
                1,
                ("tests/test_b.py::test_1", "tests/test_b.py::test_2[x]"),
                0.75,
                (FileSlice("tests/test_b.py", 0, 1),),
            ),
        ),
        known_durations=2,
        collection_errors=(bare("tests/test_broken.py", Outcome.ERROR),),
    )
    stream = io.StringIO()
    drive(PlanPrinter(stream), [run_started(plan), TestFinished(passed("t.py::ignored"))])
    assert stream.getvalue().splitlines() == [
        "3 tests in 2 shards, expected 3.25s of test time, 2 workers to start "
        "(2 durations known from earlier runs)",
        "collection error: tests/test_broken.py",
        "shard 0: 1 tests, ~2.50s",
        "  tests/test_a.py::test_slow",
        "shard 1: 2 tests, ~0.75s",
        "  tests/test_b.py::test_1",
        "  tests/test_b.py::test_2[x]",
    ]


def test_warnings_are_summarised_in_collection_order_whichever_worker_reported_first() -> None:
    out = io.StringIO()
    console = ConsoleReporter(out, tty=False)
    results = [passed("t.py::first"), passed("t.py::second")]
    drive(
        console,
        [
            run_started(),
            WarningRecorded(2, "t.py::second", "call", "UserWarning: two"),
            WarningRecorded(1, "t.py::first", "call", "UserWarning: two"),
            WarningRecorded(None, "", "collect", "UserWarning: at import", "t.py:1"),
            RunFinished(summary(results)),
        ],
    )
    text = out.getvalue()
    assert text.index("UserWarning: at import") < text.index("t.py::first")
    assert text.index("t.py::first") < text.index("t.py::second")

"""The run document and what renders from it: JSON (against its schema), JUnit (against the
JUnit schema Jenkins and pytest's own tests use), the Chrome trace, the HTML page's data, and
GitHub's annotations and job summary."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import tarfile
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from test_framework.events import (
    CapacityChanged,
    Event,
    RunContext,
    RunFinished,
    RunStarted,
    ShardFinished,
    ShardStarted,
    TestRetrying,
)
from test_framework.models import Outcome, PhaseReport, Plan, RunSummary, TestResult
from test_framework.outcomes import count_outcomes, exit_code_for
from test_framework.reporting import github
from test_framework.reporting.html_report import TEST_FIELDS, render_html
from test_framework.reporting.json_report import ReportFiles, render_json
from test_framework.reporting.junit import render_junit
from test_framework.reporting.run_document import RunDocument
from test_framework.reporting.trace import render_trace

REPO = Path(__file__).resolve().parents[2]
T0 = 1_700_000_000.0
LONGREPR = (
    "def test_bad():\n>       assert 1 == 2\nE       assert 1 == 2\n\n"
    "tests/test_a.py:7: AssertionError"
)


def result(
    nodeid: str,
    outcome: Outcome,
    duration: float,
    *,
    shard: int | None,
    start: float | None,
    attempt: int = 1,
    longrepr: str = "",
    message: str = "",
    max_rss: int | None = None,
    sections: tuple[tuple[str, str], ...] = (),
) -> TestResult:
    reports = (
        (PhaseReport(nodeid, "call", "failed", "failed", duration, longrepr, sections),)
        if longrepr or sections
        else ()
    )
    return TestResult(
        nodeid,
        outcome,
        duration,
        attempt=attempt,
        reports=reports,
        message=message,
        shard_id=shard,
        started_at=start,
        max_rss=max_rss,
    )


def run(events: Iterable[Event], results: Iterable[TestResult]) -> RunDocument:
    results = tuple(results)
    summary = RunSummary(
        run_id="run-7",
        results=results,
        counts=count_outcomes(results),
        duration=4.0,
        exit_code=int(exit_code_for(results, interrupted=False)),
    )
    files = ReportFiles([])
    context = RunContext("run-7", "/projects/demo", "balanced", ("unit",), argv=("--x",))
    started = RunStarted(
        context, Plan(shards=(), known_durations=0), capacity=2, phases={"process": T0}, at=T0
    )
    for event in (started, *events, RunFinished(summary, at=T0 + 4.0)):
        files(event)
    assert files.document is not None
    return files.document


def sample() -> RunDocument:
    """Two workers at once, a third reusing the first's slot; a retried flaky test, a failure,
    a cached test; the monitor widening once."""
    flaky_first = result(
        "tests/test_b.py::test_flaky",
        Outcome.FAILED,
        0.5,
        shard=2,
        start=T0 + 2.0,
        longrepr="E   ConnectionError: reset",
    )
    events: list[Event] = [
        ShardStarted(
            0, 100, ("tests/test_a.py::test_ok", "tests/test_a.py::test_bad"), at=T0 + 0.5
        ),
        ShardStarted(1, 101, ("tests/test_b.py::test_slow",), at=T0 + 0.6),
        ShardFinished(0, 0, 1.5, at=T0 + 2.0),
        CapacityChanged(2, 3, "cpu idle", 40.0, 1 << 30, 1, at=T0 + 1.0),
        ShardStarted(2, 102, ("tests/test_b.py::test_flaky",), at=T0 + 2.0),
        TestRetrying(flaky_first, 2, 0.1, at=T0 + 2.5),
        ShardFinished(2, 0, 1.2, at=T0 + 3.2),
        ShardFinished(1, 0, 3.0, at=T0 + 3.6),
    ]
    results = [
        result(
            "tests/test_a.py::test_ok",
            Outcome.PASSED,
            0.5,
            shard=0,
            start=T0 + 0.6,
            max_rss=50 << 20,
        ),
        result(
            "tests/test_a.py::test_bad",
            Outcome.FAILED,
            0.75,
            shard=0,
            start=T0 + 1.1,
            longrepr=LONGREPR,
            sections=(("Captured stdout call", "hello"),),
        ),
        result(
            "tests/test_b.py::test_slow",
            Outcome.PASSED,
            2.5,
            shard=1,
            start=T0 + 0.7,
            max_rss=80 << 20,
        ),
        result(
            "tests/test_b.py::test_flaky", Outcome.FLAKY, 0.5, shard=2, start=T0 + 2.6, attempt=2
        ),
        result("tests/test_c.py::test_kept", Outcome.CACHED, 9.0, shard=None, start=None),
    ]
    return run(events, results)


def test_each_test_has_its_slot_times_and_attempts() -> None:
    document = sample()
    tests = {t.nodeid: t for t in document.tests}
    assert tests["tests/test_a.py::test_ok"].slot == 0
    assert tests["tests/test_b.py::test_slow"].slot == 1
    # Shard 2 started after shard 0 ended: the lowest free slot again.
    assert tests["tests/test_b.py::test_flaky"].slot == 0
    assert tests["tests/test_c.py::test_kept"].slot is None
    bad = tests["tests/test_a.py::test_bad"]
    assert bad.start == T0 + 1.1
    assert bad.end == pytest.approx(T0 + 1.85)
    assert bad.sections == (("Captured stdout call", "hello"),)
    flaky = tests["tests/test_b.py::test_flaky"]
    assert flaky.attempts == 2
    assert [a.longrepr for a in flaky.failed_attempts] == ["E   ConnectionError: reset"]
    assert [(s.shard, s.slot) for s in document.shards] == [(0, 0), (1, 1), (2, 0)]
    assert [(c.old, c.new) for c in document.capacity] == [(2, 3)]
    assert document.started == T0


def test_metrics_say_how_the_run_used_the_machine() -> None:
    m = sample().metrics
    # The tests' own time, the flaky test's failed attempt included, the cached one not.
    assert m.serial_estimate == pytest.approx(0.5 + 0.75 + 2.5 + 0.5 + 0.5)
    assert m.wall == pytest.approx(4.0)
    assert m.speedup == pytest.approx(4.75 / 4.0, abs=1e-3)
    assert m.peak_slots == 3  # the monitor's widening
    assert m.parallel_efficiency == pytest.approx(4.75 / 4.0 / 3, abs=1e-3)
    # Worker lifetimes: 1.5 + 3.0 + 1.2 seconds.
    assert m.worker_utilisation == pytest.approx(4.75 / 5.7, abs=1e-3)
    assert (m.tests, m.tests_run, m.cached, m.not_run, m.retried, m.flaky) == (5, 4, 1, 0, 1, 1)
    assert m.cache_hit_rate == pytest.approx(0.2)
    assert m.peak_worker_rss_mb == pytest.approx(80.0)


def test_the_json_report_is_the_document_and_matches_its_schema() -> None:
    document = sample()
    data = json.loads(render_json(document))
    schema = json.loads((REPO / "docs" / "run-document.schema.json").read_text())
    jsonschema.validate(data, schema)
    assert data["schema"] == 2
    assert RunDocument.from_json(data) == document
    broken = {**data, "tests": [{**data["tests"][0], "outcome": "exploded"}]}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)


def test_a_document_of_another_schema_is_refused() -> None:
    with pytest.raises(ValueError, match="schema 1"):
        RunDocument.from_json({"schema": 1})


def junit_schema() -> Path:
    """pytest's own copy of the JUnit schema Jenkins reads (its tests validate --junitxml
    against it), from the sdist of the installed pytest, kept in the user's cache."""
    cache = Path(tempfile.gettempdir()) / "test_framework-junit-xsd"
    target = cache / f"junit-10-{pytest.__version__}.xsd"
    if target.exists():
        return target
    cache.mkdir(exist_ok=True)
    download = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--no-binary",
            ":all:",
            f"pytest=={pytest.__version__}",
            "-d",
            str(cache),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    archives = list(cache.glob(f"pytest-{pytest.__version__}.tar.gz"))
    if download.returncode != 0 or not archives:
        pytest.skip(
            f"pytest's sdist (with junit-10.xsd) could not be downloaded: {download.stderr[-300:]}"
        )
    with tarfile.open(archives[0]) as archive:
        member = next(m for m in archive.getmembers() if m.name.endswith("junit-10.xsd"))
        extracted = archive.extractfile(member)
        assert extracted is not None
        target.write_bytes(extracted.read())
    return target


def test_junit_is_valid_against_the_junit_schema() -> None:
    xmlschema = pytest.importorskip("xmlschema")
    schema = xmlschema.XMLSchema(str(junit_schema()))
    text = render_junit(sample())
    schema.validate(text)
    root = ET.fromstring(text)
    cases = {c.attrib["name"]: [child.tag for child in c] for c in root.iter("testcase")}
    assert cases["test_bad"] == ["failure", "system-out"]
    assert cases["test_flaky"] == ["flakyFailure"]
    assert cases["test_kept"] == ["skipped"]
    hostile = result(HOSTILE, Outcome.ERROR, 0.1, shard=0, start=T0, longrepr="E \x00\x1b[31m")
    schema.validate(render_junit(run([], [hostile])))


def test_the_trace_loads_back_with_one_thread_per_slot() -> None:
    trace = json.loads(render_trace(sample()))
    events: list[dict[str, Any]] = trace["traceEvents"]
    threads = {e["tid"]: e["args"]["name"] for e in events if e.get("name") == "thread_name"}
    assert threads == {1: "slot 0", 2: "slot 1"}
    tests = {e["name"]: e for e in events if e["ph"] == "X" and e["cat"] != "shard"}
    assert set(tests) == {
        "tests/test_a.py::test_ok",
        "tests/test_a.py::test_bad",
        "tests/test_b.py::test_slow",
        "tests/test_b.py::test_flaky",
    }  # the cached test ran nowhere
    bad = tests["tests/test_a.py::test_bad"]
    assert (bad["tid"], bad["cat"]) == (1, "failed")
    assert bad["ts"] == pytest.approx(1_100_000, abs=1)  # microseconds from the run's start
    assert bad["dur"] == pytest.approx(750_000, abs=1)
    counters = [(e["ts"], e["args"]["slots"]) for e in events if e["ph"] == "C"]
    assert counters == [(0.0, 2), (1_000_000.0, 3)]
    shards = [e for e in events if e["ph"] == "X" and e["cat"] == "shard"]
    assert len(shards) == 3
    # A test lies within its worker's bar on the same thread (Perfetto nests them).
    slow_shard = next(s for s in shards if s["name"] == "shard 1")
    slow = tests["tests/test_b.py::test_slow"]
    assert slow_shard["tid"] == slow["tid"]
    assert (
        slow_shard["ts"]
        <= slow["ts"]
        <= slow["ts"] + slow["dur"]
        <= slow_shard["ts"] + slow_shard["dur"]
    )


HOSTILE = "tests/test_x.py::test_name[</script><script>alert(1)</script>&<!--]"


def page_data(html: str) -> dict[str, Any]:
    match = re.search(r'<script id="run-data" type="application/json">(.*?)</script>', html, re.S)
    assert match is not None
    data: dict[str, Any] = json.loads(match.group(1))
    return data


def test_the_html_page_carries_untrusted_names_only_as_escaped_data() -> None:
    hostile = result(
        HOSTILE,
        Outcome.FAILED,
        0.1,
        shard=0,
        start=T0 + 1,
        longrepr="E   <img src=x onerror=alert(2)>\u2028</script>",
    )
    html = render_html(run([ShardStarted(0, 1, (HOSTILE,), at=T0)], [hostile]))
    assert "<script>alert(1)" not in html
    assert "<img src=x" not in html
    # Two script elements: the data block and the page's own code, nothing else.
    assert html.count("<script") == 2
    assert "http://" not in html.replace("http://www.w3.org", "")  # no network resource
    assert "https://" not in html
    data = page_data(html)
    assert data["fields"] == list(TEST_FIELDS)
    row = dict(zip(data["fields"], data["tests"][0], strict=True))
    assert row["nodeid"] == HOSTILE
    assert row["start"] == pytest.approx(1.0)
    assert "<img src=x onerror=alert(2)>" in data["details"]["0"]["longrepr"]


def test_the_html_page_keeps_output_only_for_tests_that_did_not_pass() -> None:
    data = page_data(render_html(sample()))
    by_index = {
        str(i): dict(zip(data["fields"], row, strict=True))["nodeid"]
        for i, row in enumerate(data["tests"])
    }
    assert sorted(by_index[i] for i in data["details"]) == [
        "tests/test_a.py::test_bad",
        "tests/test_b.py::test_flaky",
    ]
    assert data["capacity"] == [[0.0, 2], [1.0, 3]]
    assert data["metrics"]["peak_slots"] == 3


def failing(count: int, outcome: Outcome = Outcome.FAILED) -> list[TestResult]:
    return [
        result(
            f"tests/test_many.py::test_{i}",
            outcome,
            0.1,
            shard=0,
            start=T0 + 1,
            longrepr=LONGREPR.replace("test_a", "test_many"),
        )
        for i in range(count)
    ]


def test_github_annotates_at_most_ten_failures_and_says_how_many_more() -> None:
    document = run([], failing(13))
    lines = github.annotation_lines(document)
    errors = [line for line in lines if line.startswith("::error ")]
    assert len(errors) == 10
    assert errors[0].startswith(
        "::error file=tests/test_many.py,line=7,title=tests/test_many.py%3A%3Atest_0 failed::"
    )
    assert errors[0].endswith("::assert 1 == 2")
    notices = [line for line in lines if line.startswith("::notice ")]
    assert len(notices) == 1
    assert "3 more failing tests not annotated" in notices[0]


def test_github_puts_collection_errors_first_and_escapes_what_tests_control() -> None:
    collection = result(
        "tests/test_broken.py",
        Outcome.ERROR,
        0.0,
        shard=None,
        start=None,
        message="ImportError: no\nmodule, here: 100%",
    )
    document = run([], [*failing(2), collection])
    lines = github.annotation_lines(document, workspace=None)
    assert lines[0] == (
        "::error file=tests/test_broken.py,title=tests/test_broken.py error::"
        "ImportError: no%0Amodule, here: 100%25"
    )


def test_github_paths_are_from_the_repository_root(tmp_path: Path) -> None:
    project = tmp_path / "services" / "api"
    project.mkdir(parents=True)
    document = run([], failing(1))
    document = RunDocument.from_json({**document.to_json(), "project_root": str(project)})
    line = github.annotation_lines(document, workspace=str(tmp_path))[0]
    assert line.startswith("::error file=services/api/tests/test_many.py,line=7,")


def test_github_job_summary_lists_failures_escaped_and_stays_under_one_mebibyte(
    tmp_path: Path,
) -> None:
    pipe = result(
        "tests/t.py::test_a[x|y]", Outcome.FAILED, 0.2, shard=0, start=T0, message="<b>bold</b>"
    )
    summary_file = tmp_path / "summary.md"
    out = io.StringIO()
    reporter = github.GitHubReporter(out, {"GITHUB_STEP_SUMMARY": str(summary_file)})
    reporter(run([], [pipe]))
    text = summary_file.read_text()
    assert text.startswith("## ❌ Tests failed (exit 1)")
    assert "tests/t.py::test\\_a\\[x\\|y\\]" in text
    assert "&lt;b&gt;bold&lt;/b&gt;" in text
    assert out.getvalue().startswith("::error ")
    huge = [
        result(
            f"tests/test_{i}.py::test_{'x' * 200}",
            Outcome.FAILED,
            0.1,
            shard=0,
            start=T0,
            message="m" * 250,
        )
        for i in range(5000)
    ]
    big = github.step_summary(run([], huge))
    assert len(big.encode()) < github.SUMMARY_LIMIT
    assert "more lines left out" in big


def test_github_reports_only_on_github_actions(tmp_path: Path) -> None:
    from test_framework.reporting import subscribers_for
    from test_framework.request import RunRequest, resolve

    settings = resolve(RunRequest(project_root=REPO / "tests" / "fixtures" / "suites" / "basic"))
    quiet = subscribers_for(settings, io.StringIO(), env={})
    on_ci = subscribers_for(settings, io.StringIO(), env={"GITHUB_ACTIONS": "true"})
    assert not any(isinstance(s, ReportFiles) for s in quiet)
    files = [s for s in on_ci if isinstance(s, ReportFiles)]
    assert len(files) == 1
    assert any(isinstance(sink, github.GitHubReporter) for sink in files[0].sinks)


def test_one_builder_serves_the_console_the_report_files_and_the_api(tmp_path: Path) -> None:
    """With -v, a report file and a document sink, the run's document is built once: every
    reader gets the same document, the console's -v lines included."""
    from test_framework.reporting import subscribers_for
    from test_framework.reporting.console import ConsoleReporter
    from test_framework.reporting.run_document import RunDocumentBuilder
    from test_framework.request import RunRequest, resolve

    settings = resolve(
        RunRequest(project_root=tmp_path, verbose=1, report=tmp_path / "r.json"), environ={}
    )
    out = io.StringIO()
    received: list[RunDocument] = []
    subscribers = subscribers_for(settings, out, env={}, document_sinks=[received.append])
    builders = [s for s in subscribers if isinstance(s, RunDocumentBuilder)]
    assert len(builders) == 1
    assert subscribers[0] is builders[0]  # it sees each event before its readers
    results = (result("t.py::test_ok", Outcome.PASSED, 0.2, shard=0, start=T0 + 1.0),)
    summary = RunSummary("run-8", results, count_outcomes(results), 2.0, 0)
    context = RunContext("run-8", str(tmp_path), "balanced", ("unit",))
    events: list[Event] = [
        RunStarted(context, Plan(shards=(), known_durations=0), 2, {"process": T0}, at=T0),
        ShardStarted(0, 100, ("t.py::test_ok",), at=T0 + 0.5),
        ShardFinished(0, 0, 1.0, at=T0 + 1.5),
        RunFinished(summary, at=T0 + 2.0),
    ]
    for event in events:
        for subscriber in subscribers:
            subscriber(event)
    files = next(s for s in subscribers if isinstance(s, ReportFiles))
    console = next(s for s in subscribers if isinstance(s, ConsoleReporter))
    assert received == [files.document]
    assert console.document.document(summary) is files.document
    assert json.loads((tmp_path / "r.json").read_text())["run_id"] == "run-8"
    assert "efficiency" in out.getvalue()

"""The reports and CI shards through the command line, on real suites: `--shard K/N` runs,
`shard-verify`, `merge-reports` into JSON, JUnit and HTML, `--trace`, and the HTML report
opened in a real headless browser when one is installed (Debian's chromium)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from .helpers import engine_command, run_suite

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]


def engine(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "test_framework", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
        cwd=cwd,
    )


def test_shards_run_every_test_once_and_merge_into_one_run(tmp_path: Path) -> None:
    """many_files: 20 files x 5 tests. As in CI: one run's store exported, each shard's
    machine imports it into its own store, so the three compute the same split."""
    whole, document = run_suite("many_files", tmp_path, "--optimization", "balanced")
    assert whole.returncode == 0, whole.stderr
    everything = {t["nodeid"] for t in document["tests"]}
    project = ["--project-root", str(REPO / "tests" / "fixtures" / "suites" / "many_files")]
    export = tmp_path / "durations.json.gz"
    exported = engine(
        "store", "export", str(export), *project, "--cache-dir", str(tmp_path / "cache")
    )
    assert exported.returncode == 0, exported.stderr
    reports = []
    for k in (1, 2, 3):
        machine = tmp_path / f"machine-{k}"
        imported = engine("store", "import", str(export), *project, "--cache-dir", str(machine))
        assert imported.returncode == 0, imported.stderr
        report = tmp_path / f"shard-{k}.json"
        done = subprocess.run(
            engine_command("many_files", machine, "--shard", f"{k}/3", "--report", str(report)),
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        # pytest's words: the other shards' tests are deselected.
        part = json.loads(report.read_text())
        assert part["shard_of"] == [k, 3]
        assert part["summary"]["deselected"] == len(everything) - len(part["tests"])
        assert part["summary"]["passed"] == len(part["tests"])
        reports.append(report)
    parts = [{t["nodeid"] for t in json.loads(r.read_text())["tests"]} for r in reports]
    assert set.union(*parts) == everything
    assert sum(len(p) for p in parts) == len(everything)
    # Two tests wait 0.3 s and 0.2 s, the other 98 about a millisecond: each has a part.
    assert sorted(len(p) for p in parts) == [1, 1, 98]

    verified = engine("shard-verify", *map(str, reports))
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "OK: 3 shards ran the 100 selected tests, each exactly once" in verified.stdout
    missing = engine("shard-verify", str(reports[0]), str(reports[2]))
    assert missing.returncode == 1
    assert "missing shard report(s): 2/3" in missing.stdout

    merged = engine(
        "merge-reports",
        *map(str, reports),
        "--report",
        str(tmp_path / "all.json"),
        "--junitxml",
        str(tmp_path / "all.xml"),
        "--html",
        str(tmp_path / "all.html"),
    )
    assert merged.returncode == 0, merged.stdout + merged.stderr
    combined = json.loads((tmp_path / "all.json").read_text())
    assert {t["nodeid"] for t in combined["tests"]} == everything
    assert combined["summary"] == {"passed": 100}
    suite = ET.parse(tmp_path / "all.xml").getroot().find("testsuite")
    assert suite is not None
    assert suite.attrib["tests"] == "100"
    assert "application/json" in (tmp_path / "all.html").read_text()


def test_bad_shard_and_report_files_are_usage_errors(tmp_path: Path) -> None:
    bad = subprocess.run(
        engine_command("many_files", tmp_path / "cache", "--shard", "4/3"),
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert bad.returncode == 4
    assert "--shard expects K/N with 1 <= K <= N" in bad.stderr
    assert "Traceback" not in bad.stderr
    junk = tmp_path / "junk.json"
    junk.write_text('{"hello": 1}')
    for command in (["shard-verify"], ["merge-reports", "--report", str(tmp_path / "x.json")]):
        done = engine(*command, str(junk))
        assert done.returncode == 4, done.stdout + done.stderr
        assert f"{junk} is not a test_framework JSON report" in done.stderr
        assert "Traceback" not in done.stderr


def test_trace_and_html_of_a_run_with_every_outcome(tmp_path: Path) -> None:
    trace = tmp_path / "run.trace.json"
    html = tmp_path / "run.html"
    done, document = run_suite(
        "outcomes", tmp_path, "--trace", str(trace), "--html", str(html), "-v"
    )
    assert done.returncode == 1
    events = json.loads(trace.read_text())["traceEvents"]
    ran = {e["name"] for e in events if e["ph"] == "X" and e.get("cat") != "shard"}
    assert ran == {t["nodeid"] for t in document["tests"] if t["slot"] is not None}
    assert ran  # the tests ran on workers, so the trace has them
    assert "metrics: " in done.stdout  # -v prints the run's metrics
    page = html.read_text()
    assert "test_outcomes.py::test_failed" in page


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium installed (Debian: apt install chromium)")
def test_the_html_report_renders_in_a_headless_browser(tmp_path: Path) -> None:
    """The page's script runs without an error and draws what it says: the verdict, the
    failures, the timeline; the screenshot is kept for a person to look at."""
    html = tmp_path / "run.html"
    done, _ = run_suite("outcomes", tmp_path, "--html", str(html))
    assert done.returncode == 1
    assert CHROMIUM is not None
    common = [
        CHROMIUM,
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--virtual-time-budget=3000",
    ]
    dom = subprocess.run(
        [*common, "--dump-dom", html.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert "FAILED (exit 1)" in dom.stdout  # the script ran and filled the header
    assert "Failures (" in dom.stdout
    assert 'class="metric"' in dom.stdout
    shot = Path(os.environ.get("TEST_FRAMEWORK_SCREENSHOT", tmp_path / "report.png"))
    subprocess.run(
        [*common, "--window-size=1400,1800", f"--screenshot={shot}", html.as_uri()],
        capture_output=True,
        timeout=120,
        check=True,
    )
    assert shot.stat().st_size > 10_000


def test_history_commands_and_a_performance_regression(tmp_path: Path) -> None:
    """Three of the steal suite's tests (each waits STEAL_SECONDS): three runs at 0.15 s, then
    one at 0.5 s is a regression of each; the history commands read the four runs."""
    three = ["-k", "test_waits[0] or test_waits[1] or test_waits[2]"]
    for _ in range(3):
        done, _ = run_suite(
            "steal", tmp_path, "--workers", "2", *three, env={"STEAL_SECONDS": "0.15"}
        )
        assert done.returncode == 0, done.stdout + done.stderr
    slower, _ = run_suite(
        "steal",
        tmp_path,
        "--workers",
        "2",
        "--performance-regression",
        "--fail-on-regression",
        *three,
        env={"STEAL_SECONDS": "0.5"},
    )
    assert slower.returncode == 1, slower.stdout + slower.stderr
    assert slower.stdout.count("performance regression: test_one_long_file.py::test_waits[") == 3
    assert re.search(r"took 0\.5\ds, \d\.\dx its median 0\.1\ds over 3 runs", slower.stdout)
    base = ["--project-root", str(REPO / "tests" / "fixtures" / "suites" / "steal")]
    store = ["--cache-dir", str(tmp_path / "cache")]
    history = engine("history", *base, *store)
    assert history.returncode == 0, history.stderr
    assert "last 4 runs of" in history.stdout
    assert history.stdout.count("3 passed") == 4
    slowest = json.loads(engine("slowest", "3", *base, *store, "--format", "json").stdout)
    assert len(slowest["tests"]) == 3
    stats = engine("stats", "test_one_long_file.py::test_waits[0]", *base, *store)
    assert stats.returncode == 0, stats.stderr
    assert "4 passed" in stats.stdout
    unknown = engine("stats", "test_nothing.py::test_x", *base, *store)
    assert unknown.returncode == 4
    assert "no test 'test_nothing.py::test_x'" in unknown.stderr

    export = tmp_path / "durations.json.gz"
    exported = engine("store", "export", str(export), *base, *store)
    assert exported.returncode == 0, exported.stderr
    assert "exported 4 runs and 3 tests' statistics" in exported.stdout
    elsewhere = ["--cache-dir", str(tmp_path / "elsewhere")]
    imported = engine("store", "import", str(export), *base, *elsewhere)
    assert imported.returncode == 0, imported.stderr
    assert "imported 4 new runs" in imported.stdout
    assert engine("history", *base, *elsewhere).stdout.count("3 passed") == 4
    bad = engine("store", "import", str(tmp_path / "missing.json"), *base, *elsewhere)
    assert bad.returncode == 4
    assert "cannot read" in bad.stderr


def test_on_github_actions_failures_are_annotations_and_the_run_is_in_the_summary(
    tmp_path: Path,
) -> None:
    summary = tmp_path / "step-summary.md"
    done, _ = run_suite(
        "outcomes",
        tmp_path,
        env={"GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": str(summary)},
    )
    assert done.returncode == 1
    errors = [line for line in done.stdout.splitlines() if line.startswith("::error ")]
    assert any(
        line.startswith("::error file=test_outcomes.py,line=")
        and "title=test_outcomes.py%3A%3Atest_failed failed::" in line
        for line in errors
    ), errors
    text = summary.read_text()
    assert text.startswith("## ❌ Tests failed (exit 1)")
    assert "test\\_outcomes.py::test\\_failed" in text


def test_the_python_api_returns_the_run_document(tmp_path: Path) -> None:
    from test_framework.api import run_tests_with_optimization
    from test_framework.reporting.run_document import RunDocument

    answer = run_tests_with_optimization(
        project_root=REPO / "tests" / "fixtures" / "suites" / "basic",
        cache_dir=tmp_path / "cache",
        quiet=True,
    )
    document = answer["document"]
    assert isinstance(document, RunDocument)
    assert {t.nodeid for t in document.tests} == {r.nodeid for r in answer["summary"].results}
    assert document.metrics.tests == answer["total_tests"]
    assert all(t.start is not None and t.slot is not None for t in document.tests)

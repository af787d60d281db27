"""JUnit XML in the shape pytest's --junitxml writes, which CI systems already read.

classname/name follow pytest: the file path as a dotted module plus any classes, then the test
name. Failed attempts of a retried test appear as <rerunFailure>/<flakyFailure> (the Maven
Surefire convention), so CI shows flakiness instead of hiding it. Rendered from the run
document (run_document.py), so `merge-reports` writes it from shards' JSON reports too.
"""

from __future__ import annotations

import re
import socket
import time
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

from ..models import NodeId, Outcome
from .json_report import ReportFiles
from .run_document import Attempt, RunDocument

_FAIL_TAGS = {
    Outcome.FAILED: "failure",
    Outcome.CRASHED: "failure",
    Outcome.TIMEOUT: "failure",
    Outcome.ERROR: "error",
}
_SKIPPED = (Outcome.SKIPPED, Outcome.XFAILED, Outcome.NOT_RUN, Outcome.CACHED)


def junit_names(nodeid: NodeId) -> tuple[str, str]:
    """pytest's mangle_test_address: only the part before a parameter id is split on `::`."""
    base, bracket, params = nodeid.partition("[")
    parts = base.split("::")
    parts[-1] += bracket + params
    path = parts[0]
    module = path[:-3] if path.endswith(".py") else path
    module = module.replace("/", ".").replace("\\", ".")
    if len(parts) == 1:  # a file-level entry: a collection error or a module skip
        return "", module
    names = [module, *parts[1:-1]]
    return ".".join(names), parts[-1]


def _legal(ch: str) -> bool:
    code = ord(ch)
    return (
        ch in "\t\n\r"
        or 0x20 <= code <= 0xD7FF
        or 0xE000 <= code <= 0xFFFD
        or 0x10000 <= code <= 0x10FFFF
    )


def _clean(text: str) -> str:
    # XML 1.0 forbids control characters, surrogates and U+FFFE/U+FFFF; pytest's junitxml
    # escapes them the same way.
    return "".join(ch if _legal(ch) else f"#x{ord(ch):02X}" for ch in text)


class JUnitReportBuilder(ReportFiles):
    def __init__(self, path: Path, suite_name: str = "test_framework") -> None:
        super().__init__([(path, lambda document: render_junit(document, suite_name))])


def render_junit(document: RunDocument, suite_name: str = "test_framework") -> str:
    tests = document.tests
    count = {o: sum(1 for t in tests if t.outcome == o.value) for o in Outcome}
    failures = count[Outcome.FAILED] + count[Outcome.CRASHED] + count[Outcome.TIMEOUT]
    skipped = sum(count[o] for o in _SKIPPED)
    root = ET.Element("testsuites")
    suite = ET.SubElement(
        root,
        "testsuite",
        name=suite_name,
        errors=str(count[Outcome.ERROR]),
        failures=str(failures),
        skipped=str(skipped),
        tests=str(len(tests)),
        time=f"{document.duration:.3f}",
        timestamp=time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(document.started or None)),
        hostname=socket.gethostname(),
    )
    for test in tests:
        classname, name = junit_names(test.nodeid)
        case = ET.SubElement(
            suite, "testcase", classname=classname, name=name, time=f"{test.duration:.3f}"
        )
        text = _clean(test.longrepr or test.message)
        outcome = Outcome(test.outcome)
        tag = _FAIL_TAGS.get(outcome)
        if tag is not None:
            element = ET.SubElement(case, tag, message=_clean(test.message or _first_line(text)))
            element.text = text
            _attempts(case, "rerunFailure", test.failed_attempts)
        elif outcome in _SKIPPED:
            kind = "pytest.xfail" if outcome is Outcome.XFAILED else "pytest.skip"
            ET.SubElement(case, "skipped", type=kind, message=_clean(_first_line(text)))
        elif outcome is Outcome.FLAKY:
            _attempts(case, "flakyFailure", test.failed_attempts)
        for title, content in test.sections:
            tag_name = "system-err" if "stderr" in title else "system-out"
            ET.SubElement(case, tag_name).text = _clean(f"--- {title} ---\n{content}")
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode")


def _attempts(case: ET.Element, tag: str, attempts: Sequence[Attempt]) -> None:
    """Surefire's elements for a test's failed attempts: `rerunFailure` under a test that still
    failed, `flakyFailure` under one that passed on a retry."""
    for attempt in attempts:
        element = ET.SubElement(
            case,
            tag,
            message=_clean(_first_line(attempt.longrepr)),
            type=error_type(attempt.longrepr),
        )
        element.text = _clean(attempt.longrepr)


_CRASH_LINE = re.compile(r"^\S+:\d+: ([A-Za-z_][\w.]*)$", re.MULTILINE)
_E_LINE = re.compile(r"^E\s+([A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt|Warning))\b", re.M)


def error_type(longrepr: str) -> str:
    """The exception's name, which Surefire's rerun elements require as `type`: pytest's
    crash line (`path:12: AssertionError`), else the first `E   SomeError: ...`."""
    crash = _CRASH_LINE.findall(longrepr)
    if crash:
        return str(crash[-1])
    found = _E_LINE.search(longrepr)
    return found.group(1) if found else "failure"


def _first_line(text: str) -> str:
    for line in text.splitlines():
        if line.startswith("E "):
            return line[1:].strip()[:300]
    stripped = text.strip()
    return stripped.splitlines()[0][:300] if stripped else ""

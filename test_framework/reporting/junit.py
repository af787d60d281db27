"""JUnit XML in the shape pytest's --junitxml writes, which CI systems already read.

classname/name follow pytest: the file path as a dotted module plus any classes, then the test
name. Failed attempts of a retried test appear as <rerunFailure>/<flakyFailure> (the Maven
Surefire convention), so CI shows flakiness instead of hiding it.
"""

from __future__ import annotations

import socket
import time
import xml.etree.ElementTree as ET
from pathlib import Path

from ..events import Event, RunFinished, TestRetrying
from ..models import NodeId, Outcome, RunSummary, TestResult
from .json_report import write_atomic

_FAIL_TAGS = {
    Outcome.FAILED: "failure",
    Outcome.CRASHED: "failure",
    Outcome.TIMEOUT: "failure",
    Outcome.ERROR: "error",
}


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


class JUnitReportBuilder:
    def __init__(self, path: Path, suite_name: str = "test_framework") -> None:
        self.path = path
        self.suite_name = suite_name
        self.attempts: dict[NodeId, list[TestResult]] = {}
        self.written = False

    def __call__(self, event: Event) -> None:
        if isinstance(event, TestRetrying):
            self.attempts.setdefault(event.result.nodeid, []).append(event.result)
        elif isinstance(event, RunFinished):
            write_atomic(self.path, self.render(event.summary))
            self.written = True

    def render(self, summary: RunSummary) -> str:
        results = summary.results
        count = {o: sum(1 for r in results if r.outcome is o) for o in Outcome}
        failures = count[Outcome.FAILED] + count[Outcome.CRASHED] + count[Outcome.TIMEOUT]
        skipped = (
            count[Outcome.SKIPPED]
            + count[Outcome.XFAILED]
            + count[Outcome.NOT_RUN]
            + count[Outcome.CACHED]
        )
        root = ET.Element("testsuites")
        suite = ET.SubElement(
            root,
            "testsuite",
            name=self.suite_name,
            errors=str(count[Outcome.ERROR]),
            failures=str(failures),
            skipped=str(skipped),
            tests=str(len(results)),
            time=f"{summary.duration:.3f}",
            timestamp=time.strftime("%Y-%m-%dT%H:%M:%S"),
            hostname=socket.gethostname(),
        )
        for result in results:
            classname, name = junit_names(result.nodeid)
            case = ET.SubElement(
                suite, "testcase", classname=classname, name=name, time=f"{result.duration:.3f}"
            )
            text = _clean(result.longrepr or result.message)
            tag = _FAIL_TAGS.get(result.outcome)
            if tag is not None:
                element = ET.SubElement(
                    case, tag, message=_clean(result.message or _first_line(text))
                )
                element.text = text
                for attempt in self.attempts.get(result.nodeid, []):
                    rerun = ET.SubElement(
                        case, "rerunFailure", message=_clean(_first_line(attempt.longrepr))
                    )
                    rerun.text = _clean(attempt.longrepr)
            elif result.outcome in (
                Outcome.SKIPPED,
                Outcome.XFAILED,
                Outcome.NOT_RUN,
                Outcome.CACHED,
            ):
                kind = "pytest.xfail" if result.outcome is Outcome.XFAILED else "pytest.skip"
                ET.SubElement(case, "skipped", type=kind, message=_clean(_first_line(text)))
            elif result.outcome is Outcome.FLAKY:
                for attempt in self.attempts.get(result.nodeid, []):
                    flaky = ET.SubElement(
                        case, "flakyFailure", message=_clean(_first_line(attempt.longrepr))
                    )
                    flaky.text = _clean(attempt.longrepr)
            for title, content in result.sections:
                tag_name = "system-err" if "stderr" in title else "system-out"
                ET.SubElement(case, tag_name).text = _clean(f"--- {title} ---\n{content}")
        ET.indent(root)
        return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode")


def _first_line(text: str) -> str:
    for line in text.splitlines():
        if line.startswith("E "):
            return line[1:].strip()[:300]
    stripped = text.strip()
    return stripped.splitlines()[0][:300] if stripped else ""

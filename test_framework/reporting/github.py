"""GitHub Actions (`GITHUB_ACTIONS=true`): failures as annotations, the run in the job summary.

Annotations are workflow commands on stdout (`::error file=...,line=...,title=...::message`).
GitHub shows at most 10 of each kind per step, so the engine writes the 10 most relevant
(collection errors, then failures, errors, crashes, timeouts, each in collection order) and
one notice saying how many it left out; flaky tests are warnings under the same rule. The
line is the test file's last line in the traceback (where it failed), when pytest's report
names one. The summary (markdown appended to `$GITHUB_STEP_SUMMARY`) has the verdict, the
counts, the metrics, the failures, the slowest and the flaky tests, and stays under GitHub's
1 MiB limit (lists are cut, and say so). Everything a test controls (ids, messages) is escaped.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import TextIO

from .run_document import RunDocument, TestRecord
from .sections import last_line

MAX_ANNOTATIONS = 10  # per kind and step: GitHub shows no more
SUMMARY_LIMIT = 1024 * 1024  # GitHub's limit for one step's summary, in bytes
SUMMARY_BUDGET = SUMMARY_LIMIT - 64 * 1024  # what the engine allows itself
_RELEVANCE = {"error": 1, "failed": 1, "crashed": 2, "timeout": 3}


def active(env: Mapping[str, str]) -> bool:
    return env.get("GITHUB_ACTIONS") == "true"


class GitHubReporter:
    """A run document sink: annotations on `out`, the summary appended to the step's file."""

    def __init__(self, out: TextIO, env: Mapping[str, str]) -> None:
        self.out = out
        self.summary_path = env.get("GITHUB_STEP_SUMMARY")
        self.workspace = env.get("GITHUB_WORKSPACE")

    def __call__(self, document: RunDocument) -> None:
        for line in annotation_lines(document, self.workspace):
            self.out.write(line + "\n")
        self.out.flush()
        if self.summary_path:
            with open(self.summary_path, "a", encoding="utf-8") as handle:
                handle.write(step_summary(document))


def annotation_lines(document: RunDocument, workspace: str | None = None) -> list[str]:
    failing = [t for t in document.tests if t.outcome in _RELEVANCE]
    failing.sort(key=lambda t: 0 if "::" not in t.nodeid else _RELEVANCE[t.outcome])
    flaky = [t for t in document.tests if t.outcome == "flaky"]
    lines: list[str] = []
    kinds = (("error", failing, "failing tests"), ("warning", flaky, "flaky tests"))
    for kind, tests, what in kinds:
        for test in tests[:MAX_ANNOTATIONS]:
            lines.append(_annotation(kind, test, document.project_root, workspace))
        if len(tests) > MAX_ANNOTATIONS:
            left = len(tests) - MAX_ANNOTATIONS
            lines.append(
                f"::notice title={_property('test_framework')}::"
                + _data(
                    f"{left} more {what} not annotated (GitHub shows {MAX_ANNOTATIONS} per "
                    "kind); the job summary and the reports list them all"
                )
            )
    return lines


def _annotation(kind: str, test: TestRecord, project_root: str, workspace: str | None) -> str:
    file = test.nodeid.split("::", 1)[0]
    properties = [f"file={_property(_repository_path(file, project_root, workspace))}"]
    line = failing_line(test, file)
    if line is not None:
        properties.append(f"line={line}")
    title = f"{test.nodeid} {test.outcome}"
    if kind == "warning":
        title = f"{test.nodeid} is flaky (passed on attempt {test.attempts})"
    properties.append(f"title={_property(title)}")
    text = test.message or _error_line(test.longrepr) or test.outcome
    if kind == "warning" and test.failed_attempts:
        text = _error_line(test.failed_attempts[0].longrepr) or text
    return f"::{kind} {','.join(properties)}::{_data(text)}"


def failing_line(test: TestRecord, file: str) -> int | None:
    """The last line of the test's own file that its traceback names (`file.py:12: ...`)."""
    text = test.longrepr or (test.failed_attempts[0].longrepr if test.failed_attempts else "")
    found = re.findall(rf"^{re.escape(file)}:(\d+):", text, flags=re.MULTILINE)
    return int(found[-1]) if found else None


def _repository_path(file: str, project_root: str, workspace: str | None) -> str:
    """GitHub wants paths from the repository's root; node ids are from the project's."""
    if not workspace or not project_root:
        return file
    try:
        prefix = Path(project_root).resolve().relative_to(Path(workspace).resolve())
    except ValueError:
        return file
    return (prefix / file).as_posix() if str(prefix) != "." else file


def _error_line(text: str) -> str:
    return last_line(text, limit=None)  # an annotation shows the whole line


def _data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _property(text: str) -> str:
    return _data(text).replace(":", "%3A").replace(",", "%2C")


def _md(text: str) -> str:
    """Text a test controls, made inert in GitHub markdown (tables included)."""
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = re.sub(r"([\\`*_\[\]|#!~])", r"\\\1", text)
    return text.replace("\r", " ").replace("\n", " ")


def step_summary(document: RunDocument) -> str:
    m = document.metrics
    verdict = "passed" if document.exit_code == 0 else f"failed (exit {document.exit_code})"
    if document.interrupted:
        verdict = "interrupted"
    icon = "✅" if document.exit_code == 0 else "❌"
    shard = f" (shard {document.shard_of[0]}/{document.shard_of[1]})" if document.shard_of else ""
    parts = [
        f"## {icon} Tests {verdict}{shard}\n\n",
        "| " + " | ".join(_md(word) for word in document.summary) + " | wall |\n",
        "|" + " ---: |" * (len(document.summary) + 1) + "\n",
        "| " + " | ".join(str(n) for n in document.summary.values()) + f" | {m.wall:.1f} s |\n\n",
        f"{m.tests_run} run, {m.cached} cached, {m.retried} retried, {m.flaky} flaky; "
        f"speed-up {_ratio(m.speedup)} on {m.peak_slots} worker slots "
        f"(serial estimate {m.serial_estimate:.1f} s)\n\n",
    ]
    failing = [t for t in document.tests if t.outcome in _RELEVANCE]
    if failing:
        parts.append(f"### Failures ({len(failing)})\n\n")
        parts += [f"- `{t.outcome}` {_md(t.nodeid)}: {_md(_brief(t))}\n" for t in failing]
        parts.append("\n")
    flaky = [t for t in document.tests if t.outcome == "flaky"]
    if flaky:
        parts.append(f"### Flaky ({len(flaky)})\n\n")
        parts += [f"- {_md(t.nodeid)} (passed on attempt {t.attempts})\n" for t in flaky]
        parts.append("\n")
    ran = [t for t in document.tests if t.outcome not in ("cached", "not_run")]
    slowest = sorted(ran, key=lambda t: t.duration, reverse=True)[:10]
    if slowest:
        parts.append("### Slowest\n\n| seconds | test |\n| ---: | --- |\n")
        parts += [f"| {t.duration:.2f} | {_md(t.nodeid)} |\n" for t in slowest]
        parts.append("\n")
    return _within_budget(parts)


def _brief(test: TestRecord) -> str:
    return (test.message or _error_line(test.longrepr) or test.outcome)[:300]


def _ratio(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}x"


def _within_budget(parts: list[str]) -> str:
    out: list[str] = []
    size = 0
    for index, part in enumerate(parts):
        length = len(part.encode("utf-8"))
        if size + length > SUMMARY_BUDGET:
            out.append(
                f"\n_{len(parts) - index} more lines left out: GitHub's summary holds 1 MiB; "
                "the JSON report has everything._\n"
            )
            break
        out.append(part)
        size += length
    return "".join(out)

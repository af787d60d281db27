"""`--html PATH`: one self-contained HTML file rendered from the run document.

The page is a fixed template (`report_template.html`: styles and a small script, no network
resource) and the run's data in one JSON block. Test names and output are untrusted: they
reach the page only inside that block, with every `<`, `>`, `&` and line separator escaped as
a JSON `\\uXXXX` sequence (so no `</script>` can end it early), and the script puts them into
the page as text (`textContent`), never as markup.

For a large run (50,000 tests) the data stays small and flat: one array per test (`TEST_FIELDS`)
with times relative to the run's start; failure output only for tests that did not pass. The
timeline is drawn on a canvas, and the failure details are built when opened.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from importlib import resources
from typing import Any

from ..models import FAILING_OUTCOMES
from .run_document import RunDocument

TEST_FIELDS = ("nodeid", "outcome", "duration", "slot", "start", "end", "attempts", "shard")
# The output kept for a failure: enough to read, bounded so one huge traceback cannot make
# the page slow (the JSON report keeps all of it).
MAX_DETAIL_CHARS = 20_000
_WITH_DETAILS = {o.value for o in FAILING_OUTCOMES} | {"flaky", "xpassed"}
_ESCAPES = str.maketrans(
    {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
)


def page_data(document: RunDocument) -> dict[str, Any]:
    origin = document.origin()

    def rel(t: float | None) -> float | None:
        return None if t is None else round(t - origin, 4)

    tests = [
        [
            t.nodeid,
            t.outcome,
            round(t.duration, 4),
            t.slot,
            rel(t.start),
            rel(t.end),
            t.attempts,
            t.shard,
        ]
        for t in document.tests
    ]
    details = {
        str(index): {
            "message": t.message,
            "longrepr": _bounded(t.longrepr),
            "sections": [[title, _bounded(text)] for title, text in t.sections],
            "attempts": [[a.attempt, a.outcome, _bounded(a.longrepr)] for a in t.failed_attempts],
        }
        for index, t in enumerate(document.tests)
        if t.outcome in _WITH_DETAILS or t.failed_attempts
    }
    return {
        "run_id": document.run_id,
        "created": document.created,
        "duration": document.duration,
        "exit_code": document.exit_code,
        "interrupted": document.interrupted,
        "project_root": document.project_root,
        "profile": document.profile,
        "categories": list(document.categories),
        "summary": dict(document.summary),
        "metrics": asdict(document.metrics),
        "timings": dict(document.timings),
        "notes": list(document.notes),
        "warnings": list(document.warnings),
        "shard_of": list(document.shard_of) if document.shard_of else None,
        "fields": list(TEST_FIELDS),
        "tests": tests,
        "details": details,
        "shards": [
            [s.shard, s.slot, rel(s.start), rel(s.end), s.tests, s.crashed] for s in document.shards
        ],
        "capacity": [[rel(t), slots] for t, slots in document.capacity_steps()],
    }


def _bounded(text: str) -> str:
    if len(text) <= MAX_DETAIL_CHARS:
        return text
    cut = len(text) - MAX_DETAIL_CHARS
    return f"[{cut} characters cut; the JSON report has all of it]\n" + text[-MAX_DETAIL_CHARS:]


def script_safe_json(data: Any) -> str:
    """JSON that can sit inside a <script> element: nothing in it can close the element or
    start markup, whatever the test names and output hold."""
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    return text.translate(_ESCAPES)


def render_html(document: RunDocument) -> str:
    template = resources.files(__package__).joinpath("report_template.html").read_text("utf-8")
    title = f"test run {document.run_id}"
    head, _, tail = template.partition("/*DATA*/")
    return head.replace("__TITLE__", _text(title)) + script_safe_json(page_data(document)) + tail


def _text(value: str) -> str:
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")

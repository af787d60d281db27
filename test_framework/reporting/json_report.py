"""The JSON report: every test with its nodeid and outcome, the counts, and the run's context.

Schema (version 1): {"schema": 1, "run_id", "created", "duration", "exit_code", "interrupted",
"project_root", "profile", "categories", "summary": {word: count}, "tests": [{"nodeid",
"outcome", "duration", "attempts", "shard", "message", "longrepr"}], "capacity": [...],
"warnings": [...], "notes": [...], "timings": {...}}: notes are what the engine decided on its
own (an open circuit breaker, a session timeout, leaked processes); timings are where the run's
time went (reporting/timings.py: engine_start, store, warm_start, collection, first_test,
tests, tail, after_last_test, wall; seconds or null).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from ..events import (
    CapacityChanged,
    Event,
    RunFinished,
    RunStarted,
    TestConfirming,
    TestRetrying,
)
from ..models import RunSummary
from .timings import TimingsBuilder

SCHEMA_VERSION = 1


class JsonReportBuilder:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.profile = ""
        self.categories: list[str] = []
        self.project_root = ""
        self.capacity: list[dict[str, Any]] = []
        self.failed_attempts: dict[str, list[dict[str, Any]]] = {}
        self.written = False
        self.timings = TimingsBuilder()

    def __call__(self, event: Event) -> None:
        self.timings(event)
        if isinstance(event, RunStarted):
            self.project_root = event.context.project_root
            self.profile = event.context.profile
            self.categories = list(event.context.categories)
        elif isinstance(event, CapacityChanged):
            self.capacity.append(
                {"t": event.at, "old": event.old, "new": event.new, "reason": event.reason}
            )
        elif isinstance(event, (TestRetrying, TestConfirming)):
            self.failed_attempts.setdefault(event.result.nodeid, []).append(
                {
                    "attempt": event.result.attempt,
                    "outcome": event.result.outcome.value,
                    "duration": event.result.duration,
                    "longrepr": event.result.longrepr,
                }
            )
        elif isinstance(event, RunFinished):
            write_atomic(self.path, json.dumps(self.document(event.summary), indent=2))
            self.written = True

    def document(self, summary: RunSummary) -> dict[str, Any]:
        return {
            "schema": SCHEMA_VERSION,
            "run_id": summary.run_id,
            "created": time.time(),
            "duration": summary.duration,
            "exit_code": summary.exit_code,
            "interrupted": summary.interrupted,
            "project_root": self.project_root,
            "profile": self.profile,
            "categories": self.categories,
            "summary": dict(summary.counts),
            "tests": [
                {
                    "nodeid": r.nodeid,
                    "outcome": r.outcome.value,
                    "duration": round(r.duration, 6),
                    "attempts": r.attempt,
                    "shard": r.shard_id,
                    "message": r.message,
                    "longrepr": r.longrepr,
                    "failed_attempts": self.failed_attempts.get(r.nodeid, []),
                }
                for r in summary.results
            ],
            "capacity": self.capacity,
            "warnings": list(summary.errors),
            "notes": list(summary.notes),
            "timings": self.timings.split(),
        }


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def write_atomic(path: Path, text: str) -> None:
    """Write next to the target and rename, so a reader never sees half a report."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a report is for others to read
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise

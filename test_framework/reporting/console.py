"""The console: live progress while the run goes on, then failures and a pytest-like closing line.

On a terminal the progress is one line redrawn in place (at most ten times a second); otherwise it
is one plain line per finished shard, so CI logs stay readable. After the run, failures are shown
the way pytest shows them: a banner per test, its traceback text and captured output, a short
summary, and `=== N passed, N failed in X.XXs ===`.
"""

from __future__ import annotations

import shutil
import time
from collections import Counter
from collections.abc import Sequence
from typing import TextIO

from ..events import (
    CapacityChanged,
    CircuitOpened,
    Event,
    ProcessesLeaked,
    RunFinished,
    RunStarted,
    RunStopping,
    ShardCrashed,
    ShardFinished,
    TestConfirming,
    TestFinished,
    TestRetrying,
    WarningRecorded,
)
from ..models import FAILING_OUTCOMES, Outcome, RunSummary, Terminal, TestResult
from ..outcomes import summary_words
from .run_document import RunDocumentBuilder, format_metrics
from .sections import (
    report_chars,
    short_summary,
    slowest_durations,
    unique_warnings,
    warnings_summary,
)
from .timings import format_split

DISABLE_WARNINGS = (
    "--disable-warnings",
    "--disable-pytest-warnings",
    "no:warnings",
    "-pno:warnings",
)

_SHOWN = FAILING_OUTCOMES | {Outcome.FLAKY}
_WORDS = {
    Outcome.PASSED: "PASSED",
    Outcome.FAILED: "FAILED",
    Outcome.ERROR: "ERROR",
    Outcome.SKIPPED: "SKIPPED",
    Outcome.XFAILED: "XFAIL",
    Outcome.XPASSED: "XPASS",
    Outcome.FLAKY: "FLAKY",
    Outcome.CRASHED: "CRASHED",
    Outcome.TIMEOUT: "TIMEOUT",
    Outcome.NOT_RUN: "NOT RUN",
    Outcome.CACHED: "CACHED",
}


def banner(text: str, fill: str, width: int) -> str:
    text = f" {text} " if text else ""
    side = max(3, (width - len(text)) // 2)
    line = fill * side + text + fill * side
    return line + fill * max(0, width - len(line))


class ConsoleReporter:
    def __init__(
        self,
        stream: TextIO,
        *,
        verbose: int = 0,
        tty: bool | None = None,
        document: RunDocumentBuilder | None = None,
    ) -> None:
        """`document`: the run's builder, fed by its own subscription; without it, a `-v`
        console builds one itself."""
        self.stream = stream
        self.verbose = verbose
        self.tty = stream.isatty() if tty is None else tty
        self.width = min(120, shutil.get_terminal_size((100, 24)).columns) if self.tty else 80
        self.total = 0
        self.done = 0
        self.counts: Counter[str] = Counter()
        self.capacity = 0
        self.started = time.monotonic()
        self._last_draw = 0.0
        self._line_open = False
        self.terminal = Terminal()
        self.planned = 0  # shards the plan announced; reruns and stolen tails come after
        self.pytest_args: tuple[str, ...] = ()
        self.warnings: list[WarningRecorded] = []
        self.feeds_document = document is None  # -v: the run's split and metrics
        self.document = document or RunDocumentBuilder()

    def __call__(self, event: Event) -> None:
        if self.verbose and self.feeds_document:
            self.document(event)
        if isinstance(event, RunStarted):
            self._run_started(event)
        elif isinstance(event, TestFinished):
            self._test_finished(event.result)
        elif isinstance(event, TestRetrying):
            self._line(
                f"RETRY {event.result.nodeid} ({event.result.outcome.value}, attempt "
                f"{event.result.attempt}; again in {event.delay:.2f}s)"
            )
        elif isinstance(event, TestConfirming):
            self._line(
                f"CONFIRM {event.result.nodeid} ({event.result.outcome.value} {event.why}; "
                "again in pytest's order and context)"
            )
        elif isinstance(event, ShardFinished):
            if not self.tty:
                made = " (made during the run)" if event.shard_id > self.planned else ""
                self._line(
                    f"[{self.done}/{self.total}] shard {event.shard_id}{made} finished in "
                    f"{event.duration:.2f}s"
                )
        elif isinstance(event, ShardCrashed):
            self._line(f"worker of shard {event.shard_id} ended abnormally: {event.reason}")
        elif isinstance(event, ProcessesLeaked):
            for process in event.processes:
                self._line(f"shard {event.shard_id} left a process running: {process}; killed")
        elif isinstance(event, CapacityChanged):
            self.capacity = event.new
            if self.verbose:
                self._line(f"capacity {event.old} -> {event.new} ({event.reason})")
        elif isinstance(event, CircuitOpened):
            self._line(
                f"!!! circuit breaker opened: {len(event.failures)} failures with "
                f"`{event.signature}`; skipping the rest of {', '.join(event.files)} !!!"
            )
        elif isinstance(event, WarningRecorded):
            self.warnings.append(event)
        elif isinstance(event, RunStopping):
            self._line(f"!!! {event.reason} !!!")
        elif isinstance(event, RunFinished):
            self._finish(event.summary)

    def _run_started(self, event: RunStarted) -> None:
        plan = event.plan
        self.total = plan.test_count + len(plan.collection_errors)
        self.capacity = event.capacity
        self.terminal = plan.terminal
        self.planned = len(plan.shards)
        self.pytest_args = event.context.pytest_args
        deselected = plan.terminal.deselected
        self._write(banner("test_framework", "=", self.width) + "\n")
        self._write(
            f"rootdir: {event.context.project_root}\n"
            f"collected {plural(plan.test_count + plan.cached + deselected, 'test')}"
            f"{f' / {deselected} deselected / {plan.test_count} selected' if deselected else ''}"
            f"{f' ({plan.cached} cached)' if plan.cached else ''}"
            f" in {plural(len(plan.shards), 'shard')}, "
            f"{plural(event.capacity, 'worker')} to start, "
            f"{plural(plan.known_durations, 'duration')} known\n"
        )

    def _test_finished(self, result: TestResult) -> None:
        self.done += 1
        self.counts[result.outcome.value] += 1
        if self.verbose:
            self._line(f"{result.nodeid} {_WORDS[result.outcome]}")
        elif self.tty:
            self._draw()

    def _draw(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_draw < 0.1:
            return
        self._last_draw = now
        total = max(self.total, 1)
        bar_width = 30
        filled = int(bar_width * min(self.done, total) / total)
        bad = sum(self.counts[o.value] for o in FAILING_OUTCOMES)
        text = (
            f"[{'#' * filled}{'.' * (bar_width - filled)}] {self.done}/{self.total} "
            f"passed {self.counts['passed']} failed {bad} "
            f"skipped {self.counts['skipped']}  workers {self.capacity}  "
            f"{now - self.started:.1f}s"
        )
        self.stream.write("\r" + text[: self.width - 1].ljust(self.width - 1))
        self.stream.flush()
        self._line_open = True

    def _line(self, text: str) -> None:
        if self._line_open:
            self.stream.write("\r" + " " * (self.width - 1) + "\r")
            self._line_open = False
        self._write(text + "\n")

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()

    def _finish(self, summary: RunSummary) -> None:
        if self._line_open:
            self._draw(force=True)
            self._write("\n")
            self._line_open = False
        shown = [r for r in summary.results if r.outcome in _SHOWN]
        failures = [r for r in shown if r.outcome is not Outcome.FLAKY]
        if failures:
            self._write(banner("FAILURES", "=", self.width) + "\n")
            for result in failures:
                self._write(banner(result.nodeid, "_", self.width) + "\n")
                self._write((result.longrepr or result.message).rstrip() + "\n")
                for title, content in result.sections:
                    self._write(banner(title, "-", self.width) + "\n" + content.rstrip() + "\n")
        disabled = any(a in DISABLE_WARNINGS for a in self.pytest_args)
        chars = report_chars(self.terminal.reportchars, warnings_disabled=disabled)
        warnings = in_collection_order(unique_warnings(self.warnings), summary.results)
        if warnings and "w" in chars:
            self._section("warnings summary", warnings_summary(warnings))
        if self.terminal.durations is not None:
            title, lines = slowest_durations(summary.results, self.terminal, verbose=self.verbose)
            self._section(title, lines)
        if summary.plugin_report:
            self._write(summary.plugin_report)
        lines = short_summary(summary.results, chars)
        if lines:
            self._section("short test summary info", lines)
        unrun = [r for r in summary.results if r.outcome is Outcome.NOT_RUN]
        if unrun and self.verbose:
            self._write(banner(f"{len(unrun)} not run", "=", self.width) + "\n")
            for result in unrun:
                self._write(
                    f"NOT RUN {result.nodeid} - {result.message.removeprefix('not run: ')}\n"
                )
        for error in summary.errors:
            self._write(f"warning: {error}\n")
        for note in summary.notes:
            self._write(f"{note}\n")
        if self.verbose:
            document = self.document.document(summary)
            self._write(format_split(dict(document.timings)) + "\n")
            self._write(format_metrics(document.metrics) + "\n")
        counts = dict(summary.counts)
        if self.terminal.deselected:
            counts["deselected"] = self.terminal.deselected
        if warnings:
            counts["warnings"] = len(warnings)
        words = ", ".join(summary_words(counts)) or "no tests ran"
        closing = f"{words} in {summary.duration:.2f}s"
        if summary.interrupted:
            closing = f"{closing} (interrupted)"
        self._write(banner(closing, "=", self.width) + "\n")

    def _section(self, title: str, lines: list[str]) -> None:
        self._write(banner(title, "=", self.width) + "\n")
        for line in lines:
            self._write(line + "\n")


def in_collection_order(
    warnings: list[WarningRecorded], results: Sequence[TestResult]
) -> list[WarningRecorded]:
    """Warnings as pytest lists them: collection's first, then by their test's place in the
    collection (`results` are in that order), whichever worker reported first."""
    order = {result.nodeid: index for index, result in enumerate(results)}
    return sorted(warnings, key=lambda w: order.get(w.nodeid, len(order)) if w.nodeid else -1)


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"

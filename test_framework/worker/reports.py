"""What a pytest report says, as the child protocol carries it: a phase with pytest's own
category and words, a skip's reason and place, a failure rendered as pytest renders it, a
warning as its summary prints it. Standard library and pytest only."""

from __future__ import annotations

import io
import os
import warnings
from typing import Any

import pytest

from .protocol import Phase, Warned

# Verbose words pytest gives its own categories: the engine knows them without being told.
_PLAIN_WORDS = frozenset({"", "PASSED", "FAILED", "ERROR", "SKIPPED", "XFAIL", "XPASS"})


def durations_min(option: Any) -> float:
    """pytest's `--durations-min`, and its default when not given (0.005 s; 0 at -vv)."""
    given = getattr(option, "durations_min", None)
    if given is not None:
        return float(given)
    return 0.0 if int(getattr(option, "verbose", 0) or 0) >= 2 else 0.005


def plain_pass(phases: list[Phase]) -> bool:
    """Setup, call and teardown passed, said nothing and were counted as pytest counts a plain
    pass: such a test travels as its duration alone."""
    return len(phases) == 3 and all(
        p.plain and p.when == when
        for p, when in zip(phases, ("setup", "call", "teardown"), strict=False)
    )


def phase_of(report: pytest.TestReport, config: pytest.Config) -> Phase:
    """One phase report as pytest's terminal counts and words it (`pytest_report_teststatus`)."""
    category = word = ""
    status = config.hook.pytest_report_teststatus(report=report, config=config)
    if status:
        category = status[0] if isinstance(status[0], str) else str(status[0])
        verbose = status[2] if isinstance(status[2], str) else ""
        word = "" if verbose in _PLAIN_WORDS else verbose
    if report.outcome == "skipped" and report.when != "call" and not category:
        category = "skipped"
    longrepr = ""
    if report.longrepr is not None and report.outcome != "passed":
        longrepr = skip_reason(report) if report.skipped else render(report)
    sections = tuple(report.sections) if report.outcome == "failed" else ()
    wasxfail = getattr(report, "wasxfail", None)
    return Phase(
        report.when,
        report.outcome,
        category,
        report.duration,
        longrepr,
        sections,
        None if wasxfail is None else str(wasxfail),
        skip_location(report, config) if report.skipped else "",
        word,
    )


def skip_reason(report: Any) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2])
    return str(longrepr)


def skip_location(report: Any, config: pytest.Config) -> str:
    """A skip's "path:line" as pytest's `-rs` line prints it (relative to where pytest runs)."""
    longrepr = report.longrepr
    if not (isinstance(longrepr, tuple) and len(longrepr) == 3):
        return ""
    path, line, _reason = longrepr
    return f"{_relative(str(path), config)}:{line}"


def warned(
    message: warnings.WarningMessage,
    when: str,
    nodeid: str,
    config: pytest.Config,
) -> Warned:
    """A recorded warning as pytest's warnings summary shows it."""
    text = warnings.formatwarning(
        str(message.message), message.category, message.filename, message.lineno, message.line
    )
    where = "" if nodeid else f"{_relative(message.filename, config)}:{message.lineno}"
    return Warned(nodeid, when, text, where)


def _relative(path: str, config: pytest.Config) -> str:
    base = str(config.invocation_params.dir)
    try:
        relative = os.path.relpath(path, base)
    except ValueError:
        return path
    return path if relative.startswith("..") else relative


def render(report: pytest.TestReport) -> str:
    """pytest's own rendering, leading indentation kept (longreprtext strips the first line's)."""
    try:
        from _pytest._io import TerminalWriter

        buffer = io.StringIO()
        writer = TerminalWriter(file=buffer)
        writer.hasmarkup = False
        report.toterminal(writer)
        return buffer.getvalue().rstrip()
    except Exception:
        return report.longreprtext

"""Reporting: subscribers to the event stream that render a run for people and for CI.

`subscribers_for` is the one place that picks a run's reporters from its settings, so the command
line and the Python API report alike. Every file format renders from one run document
(run_document.py), built once per run by `ReportFiles`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TextIO

from ..events import Subscriber
from ..request import RunSettings
from . import github
from .console import ConsoleReporter
from .html_report import render_html
from .json_report import Renderer, ReportFiles, render_json
from .junit import render_junit
from .plan import PlanPrinter
from .pytest_cache import PytestCacheWriter
from .run_document import RunDocument, RunDocumentBuilder
from .trace import render_trace


def subscribers_for(
    settings: RunSettings,
    out: TextIO,
    env: Mapping[str, str] | None = None,
    document_sinks: Sequence[Callable[[RunDocument], None]] = (),
) -> list[Subscriber]:
    """The plan (with --list) or the live console on `out`, then the report files asked for
    and, on GitHub Actions, its annotations and job summary; `document_sinks` get the run's
    document too (the Python API). One document builder serves them all, subscribed first."""
    env = os.environ if env is None else env
    subscribers: list[Subscriber] = []
    if settings.list_only:
        subscribers.append(PlanPrinter(out))
        return subscribers
    files = report_files(settings)
    sinks: list[Callable[[RunDocument], None]] = list(document_sinks)
    if github.active(env):
        sinks.append(github.GitHubReporter(out, env))
    builder = RunDocumentBuilder() if files or sinks or settings.verbose else None
    if builder is not None:
        subscribers.append(builder)
    subscribers.append(ConsoleReporter(out, verbose=settings.verbose, document=builder))
    subscribers.append(PytestCacheWriter())
    if files or sinks:
        subscribers.append(ReportFiles(files, sinks, builder))
    return subscribers


def report_files(settings: RunSettings) -> list[tuple[Path, Renderer]]:
    return report_outputs(
        report=settings.report, junitxml=settings.junitxml, html=settings.html, trace=settings.trace
    )


def report_outputs(
    *,
    report: Path | None = None,
    junitxml: Path | None = None,
    html: Path | None = None,
    trace: Path | None = None,
) -> list[tuple[Path, Renderer]]:
    """Each file asked for, with the function that renders it from the run document."""
    asked: list[tuple[Path | None, Renderer]] = [
        (report, render_json),
        (junitxml, render_junit),
        (html, render_html),
        (trace, render_trace),
    ]
    return [(path, render) for path, render in asked if path is not None]

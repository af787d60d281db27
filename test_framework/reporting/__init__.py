"""Reporting: subscribers to the event stream that render a run for people and for CI.

`subscribers_for` is the one place that picks a run's reporters from its settings, so the command
line and the Python API report alike.
"""

from __future__ import annotations

from typing import TextIO

from ..events import Subscriber
from ..request import RunSettings
from .console import ConsoleReporter
from .json_report import JsonReportBuilder
from .junit import JUnitReportBuilder
from .plan import PlanPrinter
from .pytest_cache import PytestCacheWriter


def subscribers_for(settings: RunSettings, out: TextIO) -> list[Subscriber]:
    """The plan (with --list) or the live console on `out`, then the report files asked for."""
    subscribers: list[Subscriber] = []
    if settings.list_only:
        subscribers.append(PlanPrinter(out))
    else:
        subscribers.append(ConsoleReporter(out, verbose=settings.verbose))
        subscribers.append(PytestCacheWriter())
    if settings.report is not None:
        subscribers.append(JsonReportBuilder(settings.report))
    if settings.junitxml is not None:
        subscribers.append(JUnitReportBuilder(settings.junitxml))
    return subscribers

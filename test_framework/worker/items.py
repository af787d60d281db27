"""What the worker plugin reads off pytest: which items a selection keeps, the constraint and
timeout markers, a report's text, the project files a process imported. Standard library and
pytest only, like the rest of the child side."""

from __future__ import annotations

import fnmatch
import io
import os
import resource
import sys
from typing import Any

import pytest

from .protocol import FileSlice, Selection, decode_selection, slice_bounds


def file_of(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


def load_selection(path: str | None) -> Selection | None:
    if not path:
        return None
    with open(path, encoding="utf-8") as handle:
        return decode_selection(handle.read())


def select_items(items: list[pytest.Item], selection: Selection) -> list[pytest.Item]:
    """The items a selection names, in collection order."""
    by_file: dict[str, list[pytest.Item]] = {}
    for item in items:
        by_file.setdefault(file_of(item.nodeid), []).append(item)
    keep: set[int] = set()
    for entry in selection:
        file_items = by_file.get(entry.file, [])
        if isinstance(entry, FileSlice):
            start, end = slice_bounds(entry.part, entry.parts, len(file_items))
            keep.update(id(i) for i in file_items[start:end])
        else:
            wanted = set(entry.nodeids)
            keep.update(id(i) for i in file_items if i.nodeid in wanted)
    return [item for item in items if id(item) in keep]


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def constraints_of(
    items: list[pytest.Item],
) -> tuple[tuple[str, ...], dict[str, tuple[str, ...]]]:
    """Which tests must run alone (`serial`) or hold named resources (`resource(...)`)."""
    serial: list[str] = []
    resources: dict[str, tuple[str, ...]] = {}
    for item in items:
        if item.get_closest_marker("serial") or item.get_closest_marker("parallel_unsafe"):
            serial.append(item.nodeid)
        names = [str(n) for mark in item.iter_markers("resource") for n in mark.args]
        if names:
            resources[item.nodeid] = tuple(sorted(set(names)))
    return tuple(serial), resources


def marker_timeout(item: pytest.Item) -> float | None:
    """`@pytest.mark.timeout(seconds)` (pytest-timeout's spelling): this test's own limit."""
    mark = item.get_closest_marker("timeout")
    if mark is None:
        return None
    raw = mark.args[0] if mark.args else mark.kwargs.get("timeout")
    try:
        seconds = float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return seconds if seconds >= 0 else None


def skip_reason(report: Any) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2])
    return str(longrepr)


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


def project_modules(rootdir: str, config: pytest.Config) -> list[str]:
    """Files under the rootdir that this process imported (site-packages excluded), test modules
    left out: collection imports every test file of the selection (a forked worker inherits
    the zygote's whole collection), so they say nothing about what a test file depends on."""
    prefix = rootdir.rstrip(os.sep) + os.sep
    test_patterns = [str(p) for p in config.getini("python_files")]
    found = set()
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if not path or not path.startswith(prefix) or "site-packages" in path:
            continue
        if any(fnmatch.fnmatch(os.path.basename(path), pattern) for pattern in test_patterns):
            continue
        found.add(os.path.relpath(path, rootdir))
    return sorted(found)

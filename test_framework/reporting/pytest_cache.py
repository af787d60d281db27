"""pytest's records for the whole run, written by the engine as xdist's controller writes them
(the workers write none: worker/pytest_cache.py): `cache/lastfailed`, so `pytest --lf` or
`--ff` after a run of the engine starts from this run's failures, not one worker's; and
`cache/nodeids`, every test id seen so far, from which `--nf` tells new tests.

pytest's rules (LFPlugin): a test that failed or errored is recorded; one that passed or was
skipped is dropped; a file whose collection failed is recorded under its own id, and a file
that collects again after such a failure is replaced by its tests (so `--lf` runs them). Tests
this run did not run (deselected, stopped by --maxfail) keep what the record said; a test the
skip cache reported counts as the passing outcome it was recorded with. The file is JSON as
pytest writes it (`<cache>/v/cache/lastfailed`), written only when it changed. The ids record
gains this run's tests (pytest adds the selected ones), sorted.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import structlog

from ..events import Event, RunFinished, RunStarted
from ..models import FAILING_OUTCOMES, Outcome, TestResult, file_of

log = structlog.get_logger("test_framework")

_DROPPED = frozenset(
    {
        Outcome.PASSED,
        Outcome.SKIPPED,
        Outcome.XFAILED,
        Outcome.XPASSED,
        Outcome.FLAKY,
        Outcome.CACHED,
    }
)
_GITIGNORE = "# Created by pytest automatically.\n*\n"
_CACHEDIR_TAG = (
    "Signature: 8a477f597d28d172789f06886806bc55\n"
    "# This file is a cache directory tag created by pytest.\n"
    "# For information about cache directory tags, see:\n"
    "#\thttps://bford.info/cachedir/spec.html\n"
)
_README = (
    "# pytest cache directory #\n\n"
    "This directory contains data from the pytest's cache plugin,\n"
    "which provides the `--lf` and `--ff` options, as well as the `cache` fixture.\n\n"
    "**Do not** commit this to version control.\n\n"
    "See [the docs](https://docs.pytest.org/en/stable/how-to/cache.html) for more information.\n"
)


def updated(previous: Mapping[str, bool], results: Iterable[TestResult]) -> dict[str, bool]:
    """The record after a run with these final results."""
    record = dict(previous)
    results = list(results)
    collect_failed = {
        r.nodeid for r in results if "::" not in r.nodeid and r.outcome in FAILING_OUTCOMES
    }
    tests_by_file: dict[str, list[str]] = {}
    for result in results:
        if "::" in result.nodeid:
            tests_by_file.setdefault(file_of(result.nodeid), []).append(result.nodeid)
    collected = {file_of(r.nodeid) for r in results} - collect_failed
    for file in collected:
        if record.pop(file, None) is not None:
            record.update(dict.fromkeys(tests_by_file.get(file, ()), True))
    for result in results:
        if "::" not in result.nodeid:
            if result.nodeid in collect_failed:
                record[result.nodeid] = True
        elif result.outcome in FAILING_OUTCOMES:
            record[result.nodeid] = True
        elif result.outcome in _DROPPED:
            record.pop(result.nodeid, None)
    return record


def write_pytest_cache(folder: Path, results: Iterable[TestResult]) -> None:
    """Update `<folder>/v/cache/lastfailed` and `nodeids` as pytest would at the end of this
    run."""
    results = list(results)
    failed = _read(folder, "lastfailed", dict)
    record = updated(failed, results)
    if record != failed:  # as pytest: an unchanged (or empty, never saved) record is not written
        _write(folder, "lastfailed", record)
    known = _read(folder, "nodeids", list)
    _write(folder, "nodeids", sorted({*known, *(r.nodeid for r in results if "::" in r.nodeid)}))


def _read(folder: Path, key: str, kind: type[Any]) -> Any:
    try:
        value = json.loads((folder / "v" / "cache" / key).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return kind()
    return value if isinstance(value, kind) else kind()


def _write(folder: Path, key: str, value: object) -> None:
    path = folder / "v" / "cache" / key
    if not folder.exists():
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "README.md").write_text(_README, encoding="utf-8")
        (folder / ".gitignore").write_text(_GITIGNORE, encoding="utf-8")
        (folder / "CACHEDIR.TAG").write_text(_CACHEDIR_TAG, encoding="utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_name(f".{key}.{os.getpid()}")
    scratch.write_text(json.dumps(value, ensure_ascii=False, indent=2), encoding="utf-8")
    os.replace(scratch, path)


class PytestCacheWriter:
    """A subscriber: at the end of a run, pytest's records (when pytest keeps a cache)."""

    def __init__(self) -> None:
        self.folder: str | None = None

    def __call__(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            self.folder = event.plan.terminal.pytest_cache
        elif isinstance(event, RunFinished) and self.folder is not None:
            try:
                write_pytest_cache(Path(self.folder), event.summary.results)
            except OSError as exc:
                log.warning("pytest_cache_not_written", folder=self.folder, error=str(exc))

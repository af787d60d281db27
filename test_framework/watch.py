"""`--watch`: stay up, and on each saved change rerun what it can affect, failed tests first,
on a zygote kept warm between cycles (the resident process's `WarmPool`, in this process).

A cycle's selection: the test files whose dependencies hold a changed file, statically (the
import graph, the conftest chain, the configuration) or as the skip cache recorded them (what a
file imported and read when it last ran), and the changed test files themselves. A changed file
that no test file is known to depend on runs everything, as the skip cache does. Tests that
failed in the last cycle run first, in a run of their own, so their answer comes first. The
selection narrows the warm process's collection (as `-k` would), so the zygote is reused while
no file it imported changed; an edit to one replaces it, and only it.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import TextIO

import anyio

if sys.version_info < (3, 11):  # pragma: no cover - the backport anyio depends on
    from exceptiongroup import BaseExceptionGroup

from .execution.resident import WarmPool, warm_pool
from .exit_codes import ExitCode
from .fingerprint import SKIP_DIRS
from .fingerprint.dependencies import file_dependencies
from .fingerprint.imports import ImportGraph
from .logging import configure_logging
from .models import FAILING_OUTCOMES, RunSummary, file_of
from .orchestrator import run_events
from .reporting import subscribers_for
from .reporting.console import banner
from .request import RunSettings
from .store.connection import connect_store
from .store.files import clear_store_folder
from .store.queries import load_file_records

POLL_SECONDS = 0.3
# A burst of saves (an editor writing several files, a formatter) is one change.
SETTLE_SECONDS = 0.2


def watch(settings: RunSettings, prog: str, clear_cache: bool) -> int:
    configure_logging(
        log_format=settings.log_format, verbose=settings.verbose, debug=settings.debug
    )
    if clear_cache:
        clear_store_folder(settings.cache_dir)
    try:
        return anyio.run(watch_loop, settings, sys.stdout, backend="asyncio")
    except BaseException as exc:
        # Ctrl-C while waiting arrives bare, or wrapped by the warm pool's task group beside
        # the cancellations it caused.
        if not _is_interrupt(exc):
            raise
        print(f"{prog}: watch ended", file=sys.stderr)
        return int(ExitCode.INTERRUPTED)


def _is_interrupt(exc: BaseException) -> bool:
    """Ctrl-C, alone or with the cancellations it set off (asyncio's runner cancels the main
    task on SIGINT; the task group gathers what its children raised)."""
    if isinstance(exc, BaseExceptionGroup):
        leaves = list(_leaves(exc))
        return any(isinstance(e, KeyboardInterrupt) for e in leaves) and all(
            isinstance(e, (KeyboardInterrupt, asyncio.CancelledError)) for e in leaves
        )
    return isinstance(exc, KeyboardInterrupt)


def _leaves(exc: BaseException) -> Iterator[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            yield from _leaves(inner)
    else:
        yield exc


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Size and mtime of every file under the project (caches and virtualenvs left out)."""
    found: dict[str, tuple[int, int]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [
            d
            for d in dirnames
            if d not in SKIP_DIRS and not d.startswith(".") and not d.endswith(".egg-info")
        ]
        for name in filenames:
            path = os.path.join(dirpath, name)
            try:
                stat = os.stat(path)
            except OSError:
                continue
            found[os.path.relpath(path, root).replace(os.sep, "/")] = (
                stat.st_size,
                stat.st_mtime_ns,
            )
    return found


def changed_paths(
    before: Mapping[str, tuple[int, int]], after: Mapping[str, tuple[int, int]]
) -> list[str]:
    return sorted(
        {p for p in after if before.get(p) != after[p]} | {p for p in before if p not in after}
    )


def affected_files(
    root: Path,
    test_files: Iterable[str],
    changed: Iterable[str],
    recorded: Mapping[str, Iterable[str]],
) -> list[str] | None:
    """The test files the changes can affect; None when a change is one no test file is known
    to depend on (everything runs)."""
    graph = ImportGraph(root)
    changed_set = set(changed)
    placed: set[str] = set()
    chosen = []
    for test_file in test_files:
        depends = file_dependencies(root, test_file, graph) | set(recorded.get(test_file, ()))
        placed |= depends
        if depends & changed_set:
            chosen.append(test_file)
    if changed_set - placed - set(test_files):
        return None
    return chosen


async def watch_loop(settings: RunSettings, out: TextIO) -> int:
    root = settings.project_root
    with tempfile.TemporaryDirectory(prefix="test_framework-watch-") as scratch:
        async with warm_pool(Path(scratch) / "zygote") as pool:
            state = snapshot(root)
            summary = await _cycle(settings, out, pool, None, (), "every test")
            if summary.interrupted:
                return int(ExitCode.INTERRUPTED)
            known = {file_of(r.nodeid) for r in summary.results}
            failed = _failed(summary)
            while True:
                out.write("\nwatching for changes (Ctrl-C ends)\n")
                out.flush()
                state, changed = await _next_change(root, state)
                recorded = await _recorded(settings)
                files = affected_files(root, sorted(known), changed, recorded)
                shown = ", ".join(changed[:3]) + (" ..." if len(changed) > 3 else "")
                selection: tuple[str, ...] | None = None
                why = f"{shown} changed: no test is known to depend on it"
                if files is not None:
                    if not files and not failed:
                        out.write(f"{shown} changed: no test depends on it\n")
                        continue
                    selection, why = tuple(files), f"{shown} changed"
                summary = await _cycle(settings, out, pool, selection, failed, why)
                if summary.interrupted:
                    return int(ExitCode.INTERRUPTED)
                known |= {file_of(r.nodeid) for r in summary.results}
                failed = _failed(summary)


async def _cycle(
    settings: RunSettings,
    out: TextIO,
    pool: WarmPool,
    selection: tuple[str, ...] | None,
    failed: tuple[str, ...],
    why: str,
) -> RunSummary:
    """One cycle: a clear screen, a header, the failed tests, then the rest of the selection
    (everything when `selection` is None)."""
    if out.isatty():
        out.write("\x1b[2J\x1b[H")
    out.write(banner(f"test_framework --watch: {why} ({time.strftime('%H:%M:%S')})", "#", 80))
    out.write("\n")
    summary: RunSummary | None = None
    if failed:
        summary = await _run(replace(settings, selected=failed), out, pool)
        if summary.interrupted:
            return summary
    if selection is None:
        summary = await _run(settings, out, pool)
    else:
        rest = tuple(s for s in selection if s not in failed)
        if rest:
            summary = await _run(replace(settings, selected=rest), out, pool)
    assert summary is not None
    return summary


async def _run(settings: RunSettings, out: TextIO, pool: WarmPool) -> RunSummary:
    return await run_events(settings, subscribers_for(settings, out), executors=pool.executor)


def _failed(summary: RunSummary) -> tuple[str, ...]:
    return tuple(r.nodeid for r in summary.results if r.outcome in FAILING_OUTCOMES)


async def _next_change(
    root: Path, state: dict[str, tuple[int, int]]
) -> tuple[dict[str, tuple[int, int]], list[str]]:
    while True:
        await anyio.sleep(POLL_SECONDS)
        now = snapshot(root)
        if now == state:
            continue
        await anyio.sleep(SETTLE_SECONDS)
        settled = snapshot(root)
        changed = changed_paths(state, settled)
        if changed:
            return settled, changed
        state = settled


async def _recorded(settings: RunSettings) -> dict[str, list[str]]:
    """What the skip cache recorded each test file depended on (any environment): a data
    file a test reads places a change the import graph cannot."""
    if not settings.store_path.exists():
        return {}
    try:
        db = await connect_store(settings.store_path)
    except Exception:
        return {}
    try:
        records = await load_file_records(db, str(settings.project_root))
    finally:
        await db.close()
    return {name: list(record.dependencies) for name, record in records.items()}

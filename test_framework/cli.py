"""Command line: argv -> RunRequest, and the one place that maps exceptions to exit codes.

`python -m test_framework [run] [options] [-- pytest args]` (or `flaky [options]`: flake rates
from the results store) and
`python scripts/test_backend_optimized.py [options] [-- pytest args]` take the same options.
A mistake of the user's is one line on stderr and exit 4; never a traceback. An engine bug (any
exception outside the error tree) is one line saying so and where its traceback was logged, and
exit 3, as pytest does for its own internal errors.
"""

from __future__ import annotations

import os
import resource
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

import anyio
import structlog

from .audit import audit
from .command_line import PROG
from .command_request import parse_request
from .daemon.client import daemon_request
from .daemon.wire import UnsafeSocket, socket_path
from .errors import TestFrameworkError, UsageError
from .execution.dask_executor import dask_executors
from .execution.executor import ExecutorFactory, adopting, local_executor
from .execution.prestart import Prestarted
from .exit_codes import ExitCode
from .flaky_command import main as flaky_main
from .foreground import foreground_option, run_in_foreground
from .history_command import COMMANDS as HISTORY_COMMANDS
from .history_command import main as history_main
from .logging import configure_logging, internal_error_line, log_internal_error
from .models import RunSummary
from .orchestrator import run_events
from .report_commands import merge_reports_main, shard_verify_main
from .reporting import subscribers_for
from .request import DEFAULT_CACHE_DIR, RunSettings, resolve
from .result_cache import ResultCache
from .store.connection import connect_store
from .store.files import clear_store_folder
from .store.queries import forget_file_records, load_file_index, load_file_records
from .store_command import main as store_main
from .watch import watch
from .worker.proc import started_at


async def run_settings(
    settings: RunSettings,
    out: TextIO,
    executors: ExecutorFactory = local_executor,
    process_started: float | None = None,
    scratch: Path | None = None,
) -> RunSummary:
    subscribers = subscribers_for(settings, out)
    return await run_events(
        settings,
        subscribers,
        executors=executors,
        process_started=process_started,
        scratch=scratch,
    )


def _log_own_cost() -> None:
    """The engine's own work (planning, store, reporting; not the tests): one line at -v."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    structlog.get_logger("test_framework").info(
        "engine_cost",
        cpu_seconds=round(usage.ru_utime + usage.ru_stime, 3),
        peak_rss_mb=round(usage.ru_maxrss / 1024, 1),
    )


def _why(args: list[str], prog: str) -> int:
    """`why NODEID [options]`: the skip cache's view of one test (the same pytest options as the
    runs, or the environment reads as changed)."""
    nodeid = next((a for a in args if "::" in a or a.endswith(".py")), None)
    if nodeid is None:
        raise UsageError("why: give a test's node id, e.g. why tests/test_a.py::test_one")
    request, _ = parse_request([a for a in args if a != nodeid], prog)
    settings = resolve(request)
    if not settings.store_path.exists():
        print(f"no results store at {settings.store_path}: nothing recorded yet")
        return int(ExitCode.OK)

    async def explain() -> list[str]:
        db = await connect_store(settings.store_path)
        try:
            cache = await ResultCache.open(settings, db, os.environ)
            return cache.explain(nodeid)
        finally:
            await db.close()

    for line in anyio.run(explain, backend="asyncio"):
        print(line)
    return int(ExitCode.OK)


def _cache_command(args: list[str], prog: str) -> int:
    """`cache stats`, `cache invalidate PATH`, `cache clear`: the skip cache's records."""
    actions = ("stats", "invalidate", "clear")
    if not args or args[0] not in actions:
        raise UsageError(f"cache: expected one of {', '.join(actions)}")
    action, rest = args[0], args[1:]
    path = None
    if action == "invalidate":
        if not rest or rest[0].startswith("-"):
            raise UsageError("cache invalidate: give a path (a test file, a source, a folder)")
        path, rest = rest[0].removeprefix("./"), rest[1:]
    request, _ = parse_request(rest, prog)
    settings = resolve(request)
    if not settings.store_path.exists():
        print(f"no results store at {settings.store_path}: nothing recorded yet")
        return int(ExitCode.OK)
    project = str(settings.project_root)

    async def act() -> str:
        db = await connect_store(settings.store_path)
        try:
            if action == "stats":
                records = await load_file_records(db, project)
                tests = sum(len(r.outcomes) for r in records.values())
                _, index = await load_file_index(db, project)
                return (
                    f"{len(records)} test files recorded ({tests} tests), "
                    f"{len(index)} files indexed, in {settings.store_path}"
                )
            gone = await forget_file_records(db, project, path)
            return f"{gone} test file record{'s' if gone != 1 else ''} dropped"
        finally:
            await db.close()

    print(anyio.run(act, backend="asyncio"))
    return int(ExitCode.OK)


def daemon_command(args: list[str], prog: str) -> int:
    """`daemon status` / `daemon stop`: the project's resident process (docs/resident.md)."""
    actions = ("status", "stop")
    if not args or args[0] not in actions:
        raise UsageError(f"daemon: expected one of {', '.join(actions)}")
    request, _ = parse_request(args[1:], prog)
    settings = resolve(request)
    path = socket_path(settings.cache_dir, settings.project_root)
    try:
        reply = daemon_request(path, {"op": args[0]})
    except UnsafeSocket as exc:
        raise UsageError(str(exc)) from None
    if reply is None:
        print(f"no resident process for {settings.project_root} (socket {path})")
        return int(ExitCode.OK)
    if "stopped" in reply:
        print(f"resident process {reply['stopped']} stopped")
        return int(ExitCode.OK)
    for key, value in reply.get("status", {}).items():
        print(f"{key}: {value}")
    return int(ExitCode.OK)


def main(
    argv: Sequence[str] | None = None,
    *,
    prog: str = PROG,
    executors: ExecutorFactory = local_executor,
    prestarted: Prestarted | None = None,
) -> int:
    """The command line; `executors` is the executor seam (the local one unless a caller hands
    another, as the tests do). `prestarted`: the run's zygote, started before the engine was
    imported (`__main__`); adopted when the run wants it, else stopped."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        return _main(args, prog, executors, prestarted)
    finally:
        if prestarted is not None:
            prestarted.close()


def _main(
    args: list[str], prog: str, executors: ExecutorFactory, prestarted: Prestarted | None
) -> int:
    settings: RunSettings | None = None
    scratch = None
    if prestarted is not None and executors is local_executor:
        executors, scratch = adopting(prestarted), prestarted.scratch
    try:
        if args and args[0] == "flaky":
            return flaky_main(args[1:], prog)
        if args and args[0] in HISTORY_COMMANDS:
            return history_main(args[0], args[1:], prog)
        if args and args[0] == "store":
            return store_main(args[1:], prog)
        if args and args[0] == "merge-reports":
            return merge_reports_main(args[1:], prog)
        if args and args[0] == "shard-verify":
            return shard_verify_main(args[1:], prog)
        if args and args[0] == "why":
            return _why(args[1:], prog)
        if args and args[0] == "cache":
            return _cache_command(args[1:], prog)
        if args and args[0] == "daemon":
            return daemon_command(args[1:], prog)
        auditing = bool(args) and args[0] == "audit"
        request, clear_cache = parse_request(args[1:] if auditing else args, prog)
        settings = resolve(request)
        if settings.watch:
            return watch(settings, prog, clear_cache)
        configure_logging(
            log_format=settings.log_format, verbose=settings.verbose, debug=settings.debug
        )
        if clear_cache:
            clear_store_folder(settings.cache_dir)
        if auditing:
            return anyio.run(audit, settings, sys.stdout, backend="asyncio")
        option = foreground_option(settings.pytest_args)
        if option is not None and not settings.list_only:
            return run_in_foreground(settings, option, sys.stderr)
        if settings.executor == "dask":
            executors, scratch = (
                dask_executors(
                    settings.scheduler, uuid.uuid4().hex[:12], upload=settings.dask_upload
                ),
                None,
            )
        summary = anyio.run(
            run_settings,
            settings,
            sys.stdout,
            executors,
            started_at(),
            scratch,
            backend="asyncio",
        )
        _log_own_cost()
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return int(ExitCode.INTERRUPTED)
    except BaseException as exc:
        return exit_for(exc, prog, settings, sys.stderr)
    return summary.exit_code


def exit_for(exc: BaseException, prog: str, settings: RunSettings | None, err: TextIO) -> int:
    """An error's exit code, said in one line: a user's mistake as itself, an engine bug as
    where its traceback was logged."""
    if isinstance(exc, TestFrameworkError):
        print(f"{prog}: error: {exc}", file=err)
        return int(exc.exit_code)
    if not isinstance(exc, Exception):
        raise exc
    folder = settings.cache_dir if settings is not None else Path(DEFAULT_CACHE_DIR)
    print(f"{prog}: {internal_error_line(exc, log_internal_error(exc, folder))}", file=err)
    return int(ExitCode.INTERNAL_ERROR)


async def serve_run(
    args: Sequence[str],
    prog: str,
    executors: ExecutorFactory,
    out: TextIO,
    err: TextIO,
    process_started: float | None = None,
) -> int:
    """One run of the command line inside a process that serves several (the resident
    process): what `main` does for a plain run, on the given streams, in the running loop.
    `process_started`: when the client that asked for it started."""
    settings: RunSettings | None = None
    try:
        request, clear_cache = parse_request(args, prog)
        settings = resolve(request)
        configure_logging(
            log_format=settings.log_format,
            verbose=settings.verbose,
            debug=settings.debug,
            stream=err,
        )
        if clear_cache:
            clear_store_folder(settings.cache_dir)
        if settings.executor == "dask":  # never the resident process's warm pool
            executors = dask_executors(
                settings.scheduler, uuid.uuid4().hex[:12], upload=settings.dask_upload
            )
        summary = await run_settings(settings, out, executors, process_started)
    except BaseException as exc:
        return exit_for(exc, prog, settings, err)
    return summary.exit_code

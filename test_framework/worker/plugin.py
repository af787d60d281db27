"""The pytest plugin inside every worker, zygote and discovery process: the child protocol's
sending side.

Loaded with `-p test_framework.worker.plugin`. Inert unless `TEST_FRAMEWORK_CHANNEL_FD` names an
open descriptor; then a `WorkerPlugin` holds the process's state and writes protocol messages
(protocol.py) to that descriptor, never to stdout, which belongs to the tests. Standard library
and pytest only: it runs inside the user's environment and must not load the engine there.

The hooks stay module functions that forward to the one plugin object, so pytest registers them
when it loads the module (`-p`), in the same order relative to the user's conftest hooks as
always; the state lives in the object.

A process plays one of three roles: a worker (spawned for a shard, or discovery with
`--collect-only`), a zygote (collects, or with `TEST_FRAMEWORK_ZYGOTE_EARLY` does not, and
forks a child per shard), or a forked child (a zygote's copy that became a shard's worker).

`TEST_FRAMEWORK_SELECT` names a file holding the shard's selection (protocol.Selection): slices
of files, `part k of n`, or named tests. The engine may write commands back on the channel, read
before each test (commands.py): `Skip` (the circuit breaker) and `Release` (work stealing).
"""

from __future__ import annotations

import contextlib
import faulthandler
import os
import resource
import signal
import socket
import sys
import time
import warnings
from pathlib import Path
from typing import IO

import pytest

from .board import FINISHED, RUNNING, BoardWriter
from .commands import EngineCommands, tail_to_release
from .coverage import become_coverage_worker, measuring
from .coverage import pytest_load_initial_conftests as pytest_load_initial_conftests
from .deps import DependencyRecorder
from .fork_server import ChildSetup, become_child, serve, silence_terminal
from .items import (
    collected_modules,
    constraints_of,
    cpu_seconds,
    file_of,
    load_selection,
    marker_timeout,
    preload,
    project_modules,
    renamed_files,
    select_items,
)
from .proc import now, own_children
from .protocol import (
    ENV_BOARD,
    ENV_CHANNEL,
    ENV_PRELOAD,
    ENV_RECORD_DEPS,
    ENV_SELECT,
    ENV_STACKS,
    ENV_ZYGOTE,
    ENV_ZYGOTE_ASK,
    ENV_ZYGOTE_EARLY,
    Collected,
    CollectFailed,
    Deps,
    Done,
    Hello,
    Message,
    Mode,
    Phase,
    Released,
    Result,
    decode_line,
    encode,
)
from .pytest_cache import cache_folder_of, leave_pytest_cache_to_engine
from .reads import ReadRecorder
from .reports import durations_min, phase_of, plain_pass, skip_reason, warned
from .summary import pytest_terminal_summary as pytest_terminal_summary
from .summary import (
    report_log,
    run_summary,
    summary_instructions,
    summary_plugins,
)

MAX_MODE = 1 << 16


class WorkerPlugin:
    """One process's side of the protocol, with everything it must remember between hooks."""

    def __init__(self, channel_fd: int, config: pytest.Config) -> None:
        self.fd = channel_fd
        self.config = config
        self.zygote = bool(os.environ.get(ENV_ZYGOTE))
        self.early = bool(os.environ.get(ENV_ZYGOTE_EARLY))
        # A forked child, or the zygote once its loop ended: it leaves without tearing down.
        self.quick_exit = False
        self.exitstatus = 0
        self.stacks_file: IO[str] | None = None
        self.board: BoardWriter | None = None
        self.index: dict[int, int] = {}  # id(item) -> its position in `Collected`
        self.early_files: frozenset[str] | None = None  # an early child collects only these
        self.commands = EngineCommands()
        self.withheld: dict[str, str] = {}  # nodeid -> why the engine kept it from running
        self.phases: list[Phase] = []
        self.started_at = 0.0
        self.position = -1
        self.cpu_at_start = 0.0
        self.children_before: set[int] | None = None
        self.reads = ReadRecorder(str(config.rootpath))
        self.dependencies: DependencyRecorder | None = None
        if os.environ.get(ENV_RECORD_DEPS):
            self.dependencies = DependencyRecorder()
            self.dependencies.install()
            self.reads.dependencies = self.dependencies
        self.modules_before: set[str] = set()  # sys.modules when collection began
        self.deselected = 0  # items -k / -m left out (not the engine's own narrowing)
        self.selecting = False  # the engine's narrowing is under way
        # --durations needs every phase's duration: no test travels as a plain pass then.
        self.durations_wanted = config.option.durations is not None
        # pytest's --maxfail stops collecting at the N-th collection error: this process collects
        # without it (the engine applies pytest's rule run-wide) and runs its tests with it.
        self.maxfail = int(config.option.maxfail or 0)
        config.option.maxfail = 0
        self.collectors = 0  # collectors pytest started
        self.coverage = measuring(config.option) and config.pluginmanager.has_plugin("_cov")
        self.summary_plugins = summary_plugins(config)
        self.report_log = report_log(config, self.coverage)

    # ---- sending ---------------------------------------------------------------------------
    def send(self, message: Message) -> None:
        view = memoryview(encode(message))
        while view:
            written = os.write(self.fd, view)
            view = view[written:]

    def hello(self, args: tuple[str, ...] = ()) -> None:
        self.send(Hello(os.getpid(), str(self.config.rootpath), args))

    def register_stacks(self, path: str | None) -> None:
        """SIGUSR1 dumps every thread's stack into `path`: how a hung test shows where."""
        if not path or not hasattr(faulthandler, "register"):
            return
        if self.stacks_file is not None:
            self.stacks_file.close()
        self.stacks_file = open(path, "w")  # noqa: SIM115 - must outlive this call
        faulthandler.register(signal.SIGUSR1, file=self.stacks_file, all_threads=True)

    def open_board(self, path: str | None) -> None:
        self.board = None
        if path:
            with contextlib.suppress(OSError, ValueError):
                self.board = BoardWriter(path)

    def send_collected(self, session: pytest.Session, *, constraints: bool = True) -> None:
        self.index = {id(item): position for position, item in enumerate(session.items)}
        timeouts = {}
        for item in session.items:
            seconds = marker_timeout(item)
            if seconds is not None:
                timeouts[item.nodeid] = seconds
        serial, resources = constraints_of(session.items) if constraints else ((), {})
        nodeids = tuple(item.nodeid for item in session.items)
        self.reads.recording = False
        whole = self.zygote or bool(self.config.option.collectonly)
        modules = collected_modules(self.config, self.modules_before) if whole else ()
        option = self.config.option
        self.send(
            Collected(
                nodeids,
                serial,
                resources,
                timeouts,
                self.reads.read(),
                modules,
                renamed_files(session.items),
                reportchars=str(getattr(option, "reportchars", "fE") or ""),
                durations=getattr(option, "durations", None),
                durations_min=durations_min(option),
                deselected=self.deselected,
                maxfail=self.maxfail,
                collectors=self.collectors,
                coverage=self.coverage,
                summary_plugins=self.summary_plugins,
                pytest_cache=cache_folder_of(self.config),
            )
        )

    # ---- the zygote's roles -------------------------------------------------------------------
    def waiting_zygote(self, *, early: bool) -> bool:
        """Whether this process is a zygote of that kind that has not served yet."""
        return self.zygote and not self.quick_exit and self.early == early

    def ask_mode(self) -> None:
        """A zygote started before the engine knew its kind: the engine says it now (one
        `Mode` datagram on the command socket), before pytest collects. An engine that went
        away first ends this process: nobody would use it."""
        if not self.zygote or not os.environ.pop(ENV_ZYGOTE_ASK, None):
            return
        control = socket.socket(fileno=int(os.environ[ENV_ZYGOTE]))
        try:
            data = control.recv(MAX_MODE)
        except OSError:
            data = b""
        finally:
            control.detach()  # the fork server reads the same descriptor afterwards
        mode = decode_line(data) if data else None
        if not isinstance(mode, Mode):
            os._exit(0)
        self.early = mode.early
        if mode.early:
            os.environ[ENV_ZYGOTE_EARLY] = "1"
        if mode.preload:
            os.environ[ENV_PRELOAD] = mode.preload

    def serve_forks(self, session: pytest.Session) -> ChildSetup | None:
        """The zygote's loop. Returns in each forked child, turned into a shard's worker (its
        setup returned), or in the zygote once the engine closed (None: it then runs nothing and
        reports nothing)."""
        control = socket.socket(fileno=int(os.environ[ENV_ZYGOTE]))
        child = serve(session, control, self.send)
        self.quick_exit = True
        if child is None:
            if hasattr(self.config, "workerinput"):
                # Its coverage data, saved now, would outlive the run's report and join the
                # next run's; its children hold what it measured before forking.
                self.leave_quickly()
            session.items[:] = []
            silence_terminal(session.config)
            return None
        os.close(self.fd)
        self.fd = child.channel_fd
        self.commands.reset()
        self.zygote = False
        # A test that starts pytest must not see them.
        os.environ.pop(ENV_ZYGOTE, None)
        os.environ.pop(ENV_ZYGOTE_EARLY, None)
        os.environ.pop(ENV_PRELOAD, None)
        become_child(session, child)
        self.register_stacks(child.command.stacks)
        self.hello()
        return child

    # ---- commands from the engine ---------------------------------------------------------------
    def read_commands(self, item: pytest.Item) -> None:
        """What the engine wrote since the last test (commands.py): skips are kept, each
        release gives back part of the tail."""
        for pieces in self.commands.read(self.fd):
            self.release_tail(item, pieces)

    def release_tail(self, item: pytest.Item, pieces: int) -> None:
        """Give back part of the tests after `item`, from the end (commands.tail_to_release).
        pytest's run loop reads `session.items` afresh at each step."""
        items = item.session.items
        count = tail_to_release(items, self.index.get(id(item), -1), pieces)
        released = tuple(i.nodeid for i in items[len(items) - count :]) if count else ()
        if count:
            del items[len(items) - count :]
        self.send(Released(released))

    # ---- one test ------------------------------------------------------------------------------
    def test_starts(self, item: pytest.Item) -> None:
        if self.dependencies is not None:
            self.dependencies.current = file_of(item.nodeid)
        self.read_commands(item)
        self.position = self.index.get(id(item), -1)
        if self.board is not None:
            self.board.write(RUNNING, self.position, time.monotonic())
        self.phases.clear()
        self.started_at = now()
        self.cpu_at_start = cpu_seconds()
        self.children_before = own_children()

    def phase_reported(self, report: pytest.TestReport) -> None:
        self.phases.append(phase_of(report, self.config))
        if report.when == "teardown":
            self.test_ends(report)

    def test_ends(self, report: pytest.TestReport) -> None:
        if self.dependencies is not None:
            self.dependencies.current = None
        usage = resource.getrusage(resource.RUSAGE_SELF)
        phases = list(self.phases)
        self.phases.clear()
        plain = plain_pass(phases) and not self.durations_wanted
        location = report.location
        result = Result(
            nodeid=report.nodeid,
            started_at=self.started_at,
            # What the test cost: CPU seconds of this process since it started (threads
            # included, children not), the process's peak RSS so far, children left running.
            cpu=usage.ru_utime + usage.ru_stime - self.cpu_at_start,
            max_rss=usage.ru_maxrss * 1024,
            spawned=self.spawned(),
            passed=sum(p.duration for p in phases) if plain else None,
            phases=() if plain else tuple(phases),
            location=None if plain or not location else (location[0], location[1], location[2]),
            withheld=self.withheld.pop(report.nodeid, None),
        )
        if self.board is not None:
            self.board.write(FINISHED, self.position, time.monotonic())
        self.send(result)

    def spawned(self) -> tuple[int, ...]:
        """Children that appeared during this test and are still running at its end."""
        if self.children_before is None:
            return ()
        after = own_children()
        return tuple(sorted(after - self.children_before)) if after else ()

    # ---- the end ---------------------------------------------------------------------------------
    def session_finished(self, session: pytest.Session, exitstatus: int) -> None:
        self.exitstatus = int(exitstatus)
        rootdir = str(session.config.rootpath)
        imports, reads = self.dependencies.by_file() if self.dependencies else ({}, {})
        self.send(Deps(tuple(project_modules(rootdir, session.config)), imports, reads))
        self.send(Done(self.exitstatus))

    def leave_quickly(self) -> None:
        """A forked child or the zygote ends here: atexit handlers run (coverage and the like
        save their data), then the process leaves without tearing down its heap object by
        object, which costs a few hundred milliseconds per process and tells nobody anything."""
        import atexit

        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        atexit._run_exitfuncs()
        os._exit(self.exitstatus)


# ---- pytest's hooks: forwarded to the process's one plugin object ------------------------------
_plugin: WorkerPlugin | None = None


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    global _plugin
    raw = os.environ.get(ENV_CHANNEL)
    if not raw:
        if summary_instructions() is not None:
            config.option.durations = None  # the engine printed pytest's own sections
        return
    _plugin = WorkerPlugin(int(raw), config)
    _plugin.reads.install()
    _plugin.register_stacks(os.environ.get(ENV_STACKS))
    _plugin.hello(tuple(str(a) for a in (config.option.file_or_dir or [])))


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    if _plugin is not None:
        become_coverage_worker(session.config)


@pytest.hookimpl(tryfirst=True)
def pytest_collection(session: pytest.Session) -> bool | None:
    """In an early zygote: serve forks before collecting. Each child then collects like a
    spawned worker, only its own files (pytest_ignore_collect) narrowed to its selection, so
    collection is spread over the workers instead of done once, on one core, before any test.
    The summary process collects nothing."""
    if summary_instructions() is not None:
        return True
    plugin = _plugin
    if plugin is None:
        return None
    plugin.ask_mode()
    if not plugin.waiting_zygote(early=True):
        plugin.reads.recording = True  # what this collection reads, until Collected
        plugin.modules_before = set(sys.modules)
        return None
    # What the last whole collection imported, so each child's narrowed collection starts from
    # the sys.modules pytest's whole collection would have; then serve forks.
    preload(os.environ.get(ENV_PRELOAD))
    child = plugin.serve_forks(session)
    if child is None:
        return True
    os.environ[ENV_SELECT] = child.command.select
    os.environ[ENV_BOARD] = child.command.board
    if not child.command.full:
        plugin.early_files = frozenset(e.file for e in load_selection(child.command.select) or ())
    plugin.reads.recording = True
    return None


@pytest.hookimpl(tryfirst=True)
def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    if _plugin is None or _plugin.early_files is None:
        return None
    if collection_path.name in ("conftest.py", "__init__.py") or collection_path.is_dir():
        return None
    relative = os.path.relpath(collection_path, config.rootpath).replace(os.sep, "/")
    return True if relative not in _plugin.early_files else None


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _plugin is None:
        return
    selection = load_selection(os.environ.get(ENV_SELECT))
    if selection is None:
        return
    kept = select_items(items, selection)
    if len(kept) != len(items):
        kept_ids = {id(i) for i in kept}
        _plugin.selecting = True
        try:
            config.hook.pytest_deselected(items=[i for i in items if id(i) not in kept_ids])
        finally:
            _plugin.selecting = False
        items[:] = kept


def pytest_deselected(items: list[pytest.Item]) -> None:
    if _plugin is not None and not _plugin.selecting:
        _plugin.deselected += len(items)


def pytest_warning_recorded(
    warning_message: warnings.WarningMessage,
    when: str,
    nodeid: str,
    location: tuple[str, int, str] | None,
) -> None:
    if _plugin is not None:
        _plugin.send(warned(warning_message, when, nodeid, _plugin.config))


def pytest_collectstart(collector: pytest.Collector) -> None:
    if _plugin is not None:
        _plugin.collectors += 1
        if _plugin.dependencies is not None and isinstance(collector, pytest.Module):
            # Importing the test module runs its module-level code: the file's own record.
            _plugin.dependencies.current = file_of(collector.nodeid)


def pytest_collectreport(report: pytest.CollectReport) -> None:
    if _plugin is None:
        return
    if _plugin.dependencies is not None and _plugin.dependencies.current == report.nodeid:
        _plugin.dependencies.current = None
    if _plugin.report_log is not None and (report.failed or report.skipped):
        _plugin.report_log.write(_plugin.config, report)
    if report.failed:
        _plugin.send(CollectFailed(report.nodeid, str(report.longrepr), False, _plugin.collectors))
    elif report.skipped:
        # A module-level skip: pytest counts it as one skipped "test" named after the file.
        _plugin.send(CollectFailed(report.nodeid, skip_reason(report), True, _plugin.collectors))


def pytest_collection_finish(session: pytest.Session) -> None:
    if _plugin is None:
        return
    if isinstance(sys.exc_info()[1], pytest.UsageError):
        # pytest calls this hook on its way out of a failed collection ("file or directory not
        # found"): no collection, and the exit status 4 says why.
        return
    if not _plugin.waiting_zygote(early=False):
        # A collecting zygote says so when its run loop starts: pytest records the collection's
        # warnings after this hook, and they belong with the collection.
        _plugin.send_collected(session)
    _plugin.open_board(os.environ.get(ENV_BOARD))


@pytest.hookimpl(tryfirst=True)
def pytest_runtestloop(session: pytest.Session) -> bool | None:
    """In a zygote that collected: serve forks instead of running tests; in each forked child,
    fall through to pytest's own run loop over the child's share of the items."""
    leave_pytest_cache_to_engine(session.config)
    plugin = _plugin
    if plugin is None:
        instructions = summary_instructions()
        return None if instructions is None else run_summary(session, instructions)
    # Tests run with the user's --maxfail, counting only this worker's own failures (the
    # engine counts the run's, collection errors included).
    plugin.config.option.maxfail = plugin.maxfail
    session.testsfailed = 0
    if not plugin.waiting_zygote(early=False):
        return None
    plugin.send_collected(session)
    child = plugin.serve_forks(session)
    if child is None:
        return True
    session.items[:] = select_items(session.items, load_selection(child.command.select) or ())
    plugin.send_collected(session, constraints=False)
    plugin.open_board(child.command.board)
    return None


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    if _plugin is not None:
        _plugin.test_starts(item)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    reason = _plugin.commands.skip_files.get(file_of(item.nodeid)) if _plugin is not None else None
    if _plugin is not None and reason is not None:
        _plugin.withheld[item.nodeid] = reason
        pytest.skip(reason)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if _plugin is not None:
        if _plugin.report_log is not None:
            _plugin.report_log.write(_plugin.config, report)
        _plugin.phase_reported(report)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _plugin is not None:
        _plugin.session_finished(session, exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    if _plugin is not None and _plugin.quick_exit:
        _plugin.leave_quickly()

"""The pytest plugin inside every worker and discovery process: the child protocol.

Loaded with `-p test_framework.execution.worker_plugin`. It is inert unless
`TEST_FRAMEWORK_CHANNEL_FD` names an open file descriptor; then it writes one JSON object per
line to that descriptor, never to stdout (stdout belongs to the tests). Standard library only,
because it runs inside the user's environment and must not import the engine (anyio, structlog,
...) into their tests.

Events, protocol version 2:
  hello      {v, pid, rootdir, args}              once, at configure
  collected  {nodeids, serial, resources, timeouts}  the items this process will run, in order;
                                                  timeouts: {nodeid: s} from @pytest.mark.timeout
  collect_error {nodeid, longrepr}                a file that failed to collect
  result     {nodeid, t, cpu, maxrss, spawned, and either location, phases or passed}
             one finished test: when it started (proc.now()), CPU seconds, peak RSS, children
             it left running; its phase reports [{when, outcome, category, duration, longrepr?,
             sections?, wasxfail?}], or for a plain pass (three silent passing phases, counted
             as pytest counts a pass) only `passed`: the total duration
  deps       {files}                              project files imported (for the skip cache)
  done       {exitstatus}

One message per test, written when it ends (the engine reads them in batches). Which test is
running right now is not a message but the progress board (board.py, a shared memory page named
by `TEST_FRAMEWORK_BOARD`), so a crash or a hang is still blamed on the right test.

The engine may write commands back on the same socket, one JSON object per line, read before each
test: skip {files, reason} (the circuit breaker: tests of these files are skipped with reason);
release {pieces} (work stealing: the worker keeps the test about to run and the next, and of the
tests after it gives back pieces/(pieces+1), from the end, answering `released {nodeids}`; the
engine runs them in `pieces` new workers).

`TEST_FRAMEWORK_SELECT` names a JSON file that narrows collection: a list of entries, each
{"file": relpath, "part": [k, n]} (the k-th of n contiguous slices of that file's items, so every
item lands in exactly one slice whatever the file holds now) or {"file": relpath, "ids": [...]}.
"""

from __future__ import annotations

import contextlib
import faulthandler
import fnmatch
import io
import json
import os
import resource
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from .board import FINISHED, RUNNING, BoardWriter
from .constants import (
    ENV_BOARD,
    ENV_CHANNEL,
    ENV_SELECT,
    ENV_STACKS,
    ENV_ZYGOTE,
    ENV_ZYGOTE_EARLY,
    PROTOCOL_VERSION,
)
from .fork_server import ChildSetup, become_child, serve, silence_terminal
from .proc import now, own_children

_fd: int | None = None
_stacks_file: Any = None


def _send(event: str, **payload: Any) -> None:
    _send_message({"event": event, **payload})


def _send_message(message: dict[str, Any]) -> None:
    if _fd is None:
        return
    data = (json.dumps(message, default=str) + "\n").encode()
    view = memoryview(data)
    while view:
        written = os.write(_fd, view)
        view = view[written:]


def _file_of(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    global _fd
    raw = os.environ.get(ENV_CHANNEL)
    if not raw:
        return
    _fd = int(raw)
    _register_stacks(os.environ.get(ENV_STACKS))
    _send(
        "hello",
        v=PROTOCOL_VERSION,
        pid=os.getpid(),
        rootdir=str(config.rootpath),
        args=[str(a) for a in (config.option.file_or_dir or [])],
    )


def _register_stacks(path: str | None) -> None:
    """SIGUSR1 dumps every thread's stack into `path`: how a hung test shows where it hangs."""
    global _stacks_file
    if not path or not hasattr(faulthandler, "register"):
        return
    if _stacks_file is not None:
        _stacks_file.close()
    _stacks_file = open(path, "w")  # noqa: SIM115 - must outlive this function
    faulthandler.register(signal.SIGUSR1, file=_stacks_file, all_threads=True)


def _load_selection(path: str | None = None) -> list[dict[str, Any]] | None:
    path = path or os.environ.get(ENV_SELECT)
    if not path:
        return None
    with open(path, encoding="utf-8") as handle:
        selection: list[dict[str, Any]] = json.load(handle)
    return selection


def _select(items: list[pytest.Item], selection: list[dict[str, Any]]) -> list[pytest.Item]:
    by_file: dict[str, list[pytest.Item]] = {}
    for item in items:
        by_file.setdefault(_file_of(item.nodeid), []).append(item)
    keep: set[int] = set()
    for entry in selection:
        file_items = by_file.get(entry["file"], [])
        if "ids" in entry:
            wanted = set(entry["ids"])
            keep.update(id(i) for i in file_items if i.nodeid in wanted)
        else:
            k, n = entry["part"]
            count = len(file_items)
            keep.update(id(i) for i in file_items[k * count // n : (k + 1) * count // n])
    return [item for item in items if id(item) in keep]


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _fd is None:
        return
    selection = _load_selection()
    if selection is None:
        return
    kept = _select(items, selection)
    if len(kept) != len(items):
        kept_ids = {id(i) for i in kept}
        config.hook.pytest_deselected(items=[i for i in items if id(i) not in kept_ids])
        items[:] = kept


def pytest_collectreport(report: pytest.CollectReport) -> None:
    if _fd is None:
        return
    if report.failed:
        _send("collect_error", nodeid=report.nodeid, longrepr=str(report.longrepr))
    elif report.skipped:
        # A module-level skip: pytest counts it as one skipped "test" named after the file.
        _send(
            "collect_skip",
            nodeid=report.nodeid,
            longrepr=_skip_reason(report),
        )


def _skip_reason(report: Any) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2])
    return str(longrepr)


def pytest_collection_finish(session: pytest.Session) -> None:
    if _fd is None:
        return
    _send_collected(session)
    _open_board(os.environ.get(ENV_BOARD))


_index: dict[int, int] = {}  # id(item) -> its position in `collected`
_board: BoardWriter | None = None


def _send_collected(session: pytest.Session, *, constraints: bool = True) -> None:
    global _index
    _index = {id(item): position for position, item in enumerate(session.items)}
    timeouts = {}
    for item in session.items:
        seconds = _marker_timeout(item)
        if seconds is not None:
            timeouts[item.nodeid] = seconds
    _send(
        "collected",
        nodeids=[item.nodeid for item in session.items],
        timeouts=timeouts,
        **(_constraints(session) if constraints else {}),
    )


def _open_board(path: str | None) -> None:
    global _board
    _board = None
    if path:
        with contextlib.suppress(OSError, ValueError):
            _board = BoardWriter(path)


def _constraints(session: pytest.Session) -> dict[str, Any]:
    """Which tests must run alone (`serial`) or hold named resources (`resource(...)`)."""
    serial: list[str] = []
    resources: dict[str, list[str]] = {}
    for item in session.items:
        if item.get_closest_marker("serial") or item.get_closest_marker("parallel_unsafe"):
            serial.append(item.nodeid)
        names = [str(n) for mark in item.iter_markers("resource") for n in mark.args]
        if names:
            resources[item.nodeid] = sorted(set(names))
    return {"serial": serial, "resources": resources}


def _zygote(*, early: bool) -> bool:
    """Whether this process is a zygote (of the given kind) that has not served yet."""
    if _fd is None or _served or not os.environ.get(ENV_ZYGOTE):
        return False
    return bool(os.environ.get(ENV_ZYGOTE_EARLY)) == early


_served = False  # the zygote's loop ran here (in the zygote, and in every child it forked)
# Rootdir-relative test files a child of an early zygote collects (None: no narrowing).
_early_files: frozenset[str] | None = None


def _serve_forks(session: pytest.Session) -> ChildSetup | None:
    """The zygote's loop. Returns in each forked child, turned into a shard's worker (its
    setup returned), or in the zygote once the run is over (None: it then runs nothing and
    reports nothing)."""
    global _served, _quick_exit, _fd, _control_socket
    child = serve(session, socket.socket(fileno=int(os.environ[ENV_ZYGOTE])), _send)
    _served = _quick_exit = True
    if child is None:
        session.items[:] = []
        silence_terminal(session.config)
        return None
    assert _fd is not None
    os.close(_fd)
    _fd = child.channel_fd
    _control_socket = None
    # A test that starts pytest must not see them.
    os.environ.pop(ENV_ZYGOTE, None)
    os.environ.pop(ENV_ZYGOTE_EARLY, None)
    become_child(session, child)
    _register_stacks(child.command.get("stacks"))
    _send("hello", v=PROTOCOL_VERSION, pid=os.getpid(), rootdir=str(session.config.rootpath))
    return child


@pytest.hookimpl(tryfirst=True)
def pytest_collection(session: pytest.Session) -> bool | None:
    """In an early zygote: serve forks before collecting. Each child then collects like a
    spawned worker, only its own files (pytest_ignore_collect) narrowed to its selection, so
    collection is spread over the workers instead of done once, on one core, before any test."""
    global _early_files
    if not _zygote(early=True):
        return None
    child = _serve_forks(session)
    if child is None:
        return True
    os.environ[ENV_SELECT] = str(child.command["select"])
    os.environ[ENV_BOARD] = str(child.command["board"])
    _early_files = frozenset(str(e["file"]) for e in _load_selection() or [])
    return None


@pytest.hookimpl(tryfirst=True)
def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    if _early_files is None or collection_path.name in ("conftest.py", "__init__.py"):
        return None
    if collection_path.is_dir():
        return None
    relative = os.path.relpath(collection_path, config.rootpath).replace(os.sep, "/")
    return True if relative not in _early_files else None


@pytest.hookimpl(tryfirst=True)
def pytest_runtestloop(session: pytest.Session) -> bool | None:
    """In a zygote that collected: serve forks instead of running tests; in each forked child,
    fall through to pytest's own run loop over the child's share of the items."""
    if not _zygote(early=False):
        return None
    child = _serve_forks(session)
    if child is None:
        return True
    selection = _load_selection(child.command["select"]) or []
    session.items[:] = _select(session.items, selection)
    _send_collected(session, constraints=False)
    _open_board(child.command.get("board"))
    return None


_cpu_at_start = 0.0


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


_control_socket: socket.socket | None = None
_control_pending = b""
_skip_files: dict[str, str] = {}


def _read_commands(item: pytest.Item) -> None:
    """Commands the engine wrote to the protocol socket since the last test, without waiting:
    `{"event": "skip", "files", "reason"}` from the circuit breaker, and `{"event": "release",
    "pieces"}`: free slots take over the tail of the tests after `item` (work stealing)."""
    global _control_socket, _control_pending
    if _fd is None:
        return
    if _control_socket is None:
        try:
            _control_socket = socket.socket(fileno=os.dup(_fd))
        except OSError:
            return
    while True:
        try:
            chunk = _control_socket.recv(65536, socket.MSG_DONTWAIT)
        except OSError:  # nothing waiting (EAGAIN), or the engine is gone
            break
        if not chunk:
            break
        _control_pending += chunk
    *lines, _control_pending = _control_pending.split(b"\n")
    for line in lines:
        with contextlib.suppress(ValueError, KeyError, TypeError):
            command = json.loads(line)
            if command["event"] == "skip":
                for file in command["files"]:
                    _skip_files[str(file)] = str(command["reason"])
            elif command["event"] == "release":
                _release_tail(item, max(1, int(command.get("pieces", 1))))


def _release_tail(item: pytest.Item, pieces: int) -> None:
    """Give back pieces/(pieces+1) of the tests after `item` (half, for one piece), from the
    end. pytest's run loop reads `session.items` afresh at each step, and the test right after
    `item` (its `nextitem`, which fixture teardown was planned around) always stays."""
    items = item.session.items
    position = _index.get(id(item), -1)
    remaining = len(items) - position - 1 if position >= 0 else 0
    count = min(max(0, remaining - 1), remaining * pieces // (pieces + 1))
    released = [i.nodeid for i in items[len(items) - count :]] if count else []
    if count:
        del items[len(items) - count :]
    _send("released", nodeids=released)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    reason = _skip_files.get(_file_of(item.nodeid))
    if reason is not None:
        pytest.skip(reason)


_phases: list[dict[str, Any]] = []
_started_at = 0.0
_position = -1


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    global _cpu_at_start, _children_before, _started_at, _position
    if _fd is None:
        return
    _read_commands(item)
    _position = _index.get(id(item), -1)
    if _board is not None:
        _board.write(RUNNING, _position, time.monotonic())
    _phases.clear()
    _started_at = now()
    _cpu_at_start = _cpu_seconds()
    _children_before = own_children()


_children_before: set[int] | None = None


def _spawned() -> list[int]:
    """Children that appeared during this test and are still running at its end."""
    if _children_before is None:
        return []
    after = own_children()
    return sorted(after - _children_before) if after else []


def _marker_timeout(item: pytest.Item) -> float | None:
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


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if _fd is None:
        return
    config = _config_of(report)
    category = ""
    if config is not None:
        status = config.hook.pytest_report_teststatus(report=report, config=config)
        if status:
            category = status[0] if isinstance(status[0], str) else str(status[0])
    if report.outcome == "skipped" and report.when != "call" and not category:
        category = "skipped"
    phase: dict[str, Any] = {
        "when": report.when,
        "outcome": report.outcome,
        "category": category,
        "duration": report.duration,
    }
    if report.longrepr is not None and report.outcome != "passed":
        phase["longrepr"] = _skip_reason(report) if report.skipped else _render(report)
    if report.outcome == "failed" and report.sections:
        phase["sections"] = [list(s) for s in report.sections]
    wasxfail = getattr(report, "wasxfail", None)
    if wasxfail is not None:
        phase["wasxfail"] = wasxfail
    _phases.append(phase)
    if report.when != "teardown":
        return
    usage = resource.getrusage(resource.RUSAGE_SELF)
    message: dict[str, Any] = {"event": "result", "nodeid": report.nodeid, "t": _started_at}
    if _plain_pass(_phases):
        # Most tests: three silent passing phases. Their total duration says all there is.
        message["passed"] = sum(p["duration"] for p in _phases)
    else:
        message["location"] = list(report.location) if report.location else None
        message["phases"] = list(_phases)
    # What the test cost: CPU seconds of this process since it started (threads included,
    # children not), the process's peak RSS so far in bytes, and children it left running.
    message["cpu"] = usage.ru_utime + usage.ru_stime - _cpu_at_start
    message["maxrss"] = usage.ru_maxrss * 1024
    message["spawned"] = _spawned()
    _phases.clear()
    if _board is not None:
        _board.write(FINISHED, _position, time.monotonic())
    _send_message(message)


_PLAIN = (("setup", ""), ("call", "passed"), ("teardown", ""))


def _plain_pass(phases: list[dict[str, Any]]) -> bool:
    """Setup, call and teardown passed, said nothing (no longrepr, sections, xfail) and were
    counted as pytest counts a plain pass."""
    return len(phases) == 3 and all(
        len(p) == 4 and p["outcome"] == "passed" and (p["when"], p["category"]) == plain
        for p, plain in zip(phases, _PLAIN, strict=True)
    )


def _render(report: pytest.TestReport) -> str:
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


_session_config: pytest.Config | None = None


def _config_of(report: Any) -> pytest.Config | None:
    return _session_config


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    global _session_config
    _session_config = session.config


_quick_exit = False  # a forked child, or the zygote once it served
_exitstatus = 0


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """A forked child or the zygote ends here: atexit handlers run (coverage and the like save
    their data), then the process leaves without tearing down its whole heap object by object,
    which costs a few hundred milliseconds per process and tells nobody anything."""
    if not _quick_exit:
        return
    import atexit

    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    atexit._run_exitfuncs()
    os._exit(_exitstatus)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    global _exitstatus
    _exitstatus = int(exitstatus)
    if _fd is None:
        return
    _send("deps", files=_project_modules(str(session.config.rootpath), session.config))
    _send("done", exitstatus=int(exitstatus))


def _project_modules(rootdir: str, config: pytest.Config) -> list[str]:
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

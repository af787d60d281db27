"""One shard's lifecycle: start a worker, follow its protocol stream, judge how it ended.

The runner knows nothing of retries or fail-fast: it emits what happened as execution events
(the shard started, each attempt finished, a tail was released, the shard finished or crashed,
processes it leaked) and returns the shard's outcome (the test that was running when the worker
died or hung, the tests it never reached); the dispatcher decides what follows.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import anyio
import psutil
from anyio.abc import SocketAttribute

from ..events import (
    AttemptFinished,
    ExecutionEvent,
    ProcessesLeaked,
    ShardCollected,
    ShardCrashed,
    ShardFinished,
    ShardStarted,
    TestsReleased,
    TestStarted,
    WarningRecorded,
)
from ..machine import tree_rss
from ..models import NodeId, Outcome, Shard, TestResult, engine_result
from ..worker.board import RUNNING, BoardReader
from ..worker.board import create as create_board
from ..worker.protocol import (
    WORKER_PLUGIN,
    Collected,
    CollectFailed,
    Deps,
    Done,
    Message,
    Released,
    Result,
    Warned,
    encode,
)
from ..worker.selection import encode_selection
from .channel import read_messages
from .leaks import describe, find_session_members, kill_processes
from .process import Launcher, ScratchFiles, WorkerHandle, signal_group
from .verdicts import culprit_result, test_result

STOP_GRACE = 0.8
# Results of tests quicker than this are read in batches (channel.read_messages). Short: the
# last batch of a shard waits this long too (a wakeup per 10 ms is nothing; 100 ms was a tenth of
# a second on every warm run of a few tests).
COALESCE_SECONDS = 0.01


@dataclass(frozen=True, slots=True)
class WorkerSetup:
    """How every worker of a run starts: shared, immutable, built once by the orchestrator."""

    rootdir: str
    cwd: str
    pytest_args: tuple[str, ...]
    env: Mapping[str, str]
    scratch_dir: Path
    timeout: float = 0.0
    # TERM -> grace -> KILL: short, so fail-fast and interrupts stop a worker within a second
    # even when its test ignores TERM (a worker that finished closes its channel only on exit,
    # after its atexit work, so the grace never cuts that short).
    grace: float = STOP_GRACE
    memory_limit: int = 0  # bytes of RSS, the worker and its children together; 0: none
    watch_interval: float = 0.2
    # Every test file of the run in collection order: what a spawned full-collection worker
    # is given (a fork of a collecting zygote has collected them already).
    all_files: tuple[str, ...] = ()
    protocol_env: Mapping[str, str] = field(default_factory=dict)  # as ExecutorStart's

    def argv(self, files: Sequence[str]) -> list[str]:
        return [
            "-m",
            "pytest",
            "-p",
            WORKER_PLUGIN,
            f"--rootdir={self.rootdir}",
            "--continue-on-collection-errors",
            *self.pytest_args,
            *(str(Path(self.rootdir) / f) for f in files),
        ]


@dataclass
class ShardOutcome:
    """How one shard's worker ended: what the dispatcher needs to decide what runs next."""

    shard_id: int
    returncode: int | None = None
    collected: tuple[NodeId, ...] | None = None
    results: list[TestResult] = field(default_factory=list)
    culprit: TestResult | None = None
    unstarted: tuple[NodeId, ...] = ()
    completed: bool = False
    output_tail: str = ""
    deps: tuple[str, ...] = ()
    # Per test file, when asked: the names it imported and the project files it read.
    imports: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    reads: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    duration: float = 0.0
    leaked: tuple[str, ...] = ()

    @property
    def crashed(self) -> bool:
        return not self.completed


class WorkerControl:
    """What the dispatcher may do with a running worker: send it a command (the protocol
    socket is two-way; the worker reads commands before each test), ask what it runs now and
    how many of its tests have not started yet."""

    def __init__(
        self,
        send: Callable[[Message], None],
        running: Callable[[], NodeId | None],
        waiting: Callable[[], int],
    ) -> None:
        self.send = send
        self.running = running
        self.waiting = waiting


class ShardListener(Protocol):
    """Who follows a shard while it runs: execution's events, and the live worker's control
    for as long as it runs."""

    def emit(self, event: ExecutionEvent) -> None: ...
    def attached(self, shard_id: int, control: WorkerControl) -> None: ...
    def detached(self, shard_id: int) -> None: ...


@dataclass
class _Progress:
    """Mutable state of one worker's stream, owned by one runner task."""

    board: BoardReader
    collected: tuple[NodeId, ...] = ()
    timeouts: dict[NodeId, float] = field(default_factory=dict)  # from @pytest.mark.timeout
    running: NodeId | None = None  # as last read from the board
    running_since: float = 0.0
    finished: set[NodeId] = field(default_factory=set)
    released: set[NodeId] = field(default_factory=set)  # handed to another worker
    timed_out: float | None = None  # the limit the running test passed
    memory_exceeded: int | None = None  # the RSS that passed the memory limit
    started_at: list[tuple[float, NodeId]] = field(default_factory=list)  # worker's proc.now()
    spawned_by: dict[int, NodeId] = field(default_factory=dict)  # child pid -> its test

    def look(self) -> None:
        """Read the board: the test running now (None between tests or before the first)."""
        state = self.board.read()
        running = None
        if state is not None and state.state == RUNNING and 0 <= state.index < len(self.collected):
            running = self.collected[state.index]
            if running in self.finished:  # its result arrived after the board was read
                running = None
        if running is not None and state is not None:
            self.running_since = state.started
        self.running = running

    def now(self) -> NodeId | None:
        self.look()
        return self.running

    def waiting(self) -> int:
        """How many tests wait after the one running (or last run), not handed off. One board
        read: the orchestrator asks often."""
        state = self.board.read()
        position = state.index if state is not None else -1
        return max(0, len(self.collected) - position - 1 - len(self.released))


async def run_shard(
    shard: Shard,
    setup: WorkerSetup,
    listener: ShardListener,
    launcher: Launcher,
    clock: Callable[[], float] = time.monotonic,  # must be the workers' clock: they stamp the board
) -> ShardOutcome:
    outcome = ShardOutcome(shard_id=shard.shard_id)
    paths = ScratchFiles.for_shard(setup.scratch_dir, shard.shard_id)
    paths.select.write_text(encode_selection(shard.selection), encoding="utf-8")
    create_board(paths.board)
    progress = _Progress(board=BoardReader(paths.board))
    started = clock()
    session_id: int | None = None
    try:
        async with launcher.launch(shard, paths) as worker:
            session_id = worker.pid
            listener.emit(
                ShardStarted(
                    shard.shard_id, worker.pid, shard.nodeids, shard.attempt, worker.full_collection
                )
            )
            control = WorkerControl(_sender(worker), progress.now, progress.waiting)
            listener.attached(shard.shard_id, control)
            try:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(
                        _watchdog, worker, progress, setup, listener, shard.shard_id, clock
                    )
                    async for message in read_messages(worker.channel, COALESCE_SECONDS):
                        _handle(message, shard, progress, outcome, listener)
                    # The channel closed: the worker is gone (or closed it); stop the watchdog.
                    tg.cancel_scope.cancel()
                with anyio.move_on_after(setup.grace):
                    await worker.wait()
            finally:
                listener.detached(shard.shard_id)
            outcome.returncode = worker.returncode
            outcome.leaked = _reap_leaks(worker.pid, progress)
    except BaseException:
        # Stopped from outside (an interrupt, fail-fast): the launcher killed the worker's group;
        # a leak that moved to a group of its own is still in the session.
        if session_id is not None:
            kill_processes(find_session_members(session_id))
        progress.board.close()
        raise
    outcome.duration = clock() - started
    outcome.output_tail = worker.output_text()
    if not outcome.completed:
        progress.look()
        _judge_crash(shard, progress, outcome, paths.stacks, setup, clock())
    progress.board.close()
    _cleanup(paths.select, paths.stacks, paths.board)
    _report_end(shard, outcome, listener)
    return outcome


def _report_end(shard: Shard, outcome: ShardOutcome, listener: ShardListener) -> None:
    if outcome.leaked:
        listener.emit(ProcessesLeaked(shard.shard_id, outcome.leaked))
    if not outcome.crashed:
        listener.emit(
            ShardFinished(
                shard.shard_id,
                outcome.returncode or 0,
                outcome.duration,
                shard.files,
                outcome.deps,
                outcome.imports,
                outcome.reads,
            )
        )
        return
    culprit = outcome.culprit
    listener.emit(
        ShardCrashed(
            shard.shard_id,
            outcome.returncode,
            culprit.nodeid if culprit else None,
            culprit.message if culprit else "worker ended early",
            outcome.output_tail,
        )
    )
    if culprit is not None:
        listener.emit(AttemptFinished(culprit))


def _sender(worker: WorkerHandle) -> Callable[[Message], None]:
    """Small and rare commands, so a plain non-blocking write; a gone worker is ignored."""
    raw = worker.channel.extra(SocketAttribute.raw_socket, None)

    def send(command: Message) -> None:
        if raw is None:
            return
        with contextlib.suppress(OSError):  # the socket is non-blocking: never waits
            os.write(raw.fileno(), encode(command))

    return send


def _handle(
    message: Message,
    shard: Shard,
    progress: _Progress,
    outcome: ShardOutcome,
    listener: ShardListener,
) -> None:
    if isinstance(message, Result):
        result = test_result(message, shard)
        progress.finished.add(message.nodeid)
        progress.started_at.append((message.started_at, message.nodeid))
        for pid in message.spawned:
            progress.spawned_by[pid] = message.nodeid
        outcome.results.append(result)
        listener.emit(AttemptFinished(result))
    elif isinstance(message, Collected):
        outcome.collected = progress.collected = message.nodeids
        progress.timeouts = dict(message.timeouts or {})
        listener.emit(ShardCollected(shard.shard_id, message.nodeids, message.renamed))
    elif isinstance(message, CollectFailed):
        outcome_kind = Outcome.SKIPPED if message.skipped else Outcome.ERROR
        result = engine_result(
            message.nodeid,
            outcome_kind,
            "collect",
            "",
            message.longrepr,
            attempt=shard.attempt,
            shard_id=shard.shard_id,
        )
        outcome.results.append(result)
        listener.emit(AttemptFinished(result))
    elif isinstance(message, Warned):
        listener.emit(
            WarningRecorded(
                shard.shard_id, message.nodeid, message.when, message.message, message.location
            )
        )
    elif isinstance(message, Released):
        progress.released.update(message.nodeids)
        listener.emit(TestsReleased(shard.shard_id, message.nodeids))
    elif isinstance(message, Deps):
        outcome.deps = message.files
        outcome.imports = dict(message.imports or {})
        outcome.reads = dict(message.reads or {})
    elif isinstance(message, Done):
        outcome.completed = True


async def _watchdog(
    worker: WorkerHandle,
    progress: _Progress,
    setup: WorkerSetup,
    listener: ShardListener,
    shard_id: int,
    clock: Callable[[], float],
) -> None:
    """Each tick: read the board; kill the worker when its running test passes its timeout
    (the test's marker, else the run's) or the worker's memory passes the limit; the crash
    judge names the test."""
    while True:
        await anyio.sleep(setup.watch_interval)
        before = progress.running
        progress.look()
        if progress.running is None:
            continue
        if progress.running != before:
            listener.emit(TestStarted(shard_id, progress.running))
        limit = progress.timeouts.get(progress.running, setup.timeout)
        if limit > 0 and clock() - progress.running_since > limit:
            progress.timed_out = limit
            # faulthandler in the worker dumps every thread's stack on SIGUSR1.
            signal_group(worker.pid, signal.SIGUSR1)
            await anyio.sleep(0.3)
            signal_group(worker.pid, signal.SIGKILL)
            return
        if setup.memory_limit > 0:
            rss = _tree_rss(worker.pid)
            if rss > setup.memory_limit:
                progress.memory_exceeded = rss
                signal_group(worker.pid, signal.SIGKILL)
                return


def _tree_rss(pid: int) -> int:
    """Resident memory of the worker and its descendants, in bytes (0 once it is gone)."""
    try:
        return tree_rss(psutil.Process(pid))
    except psutil.Error:
        return 0


def _reap_leaks(session_id: int, progress: _Progress) -> tuple[str, ...]:
    """Kill what the shard's tests left running in the worker's session; describe each."""
    leaked = find_session_members(session_id)
    if not leaked:
        return ()
    kill_processes(leaked)
    return tuple(
        describe(p, progress.spawned_by.get(p.pid) or _running_at(progress, p.started_at))
        for p in leaked
    )


def _running_at(progress: _Progress, when: float) -> NodeId | None:
    """The last test that had started by `when` (on the worker's clock)."""
    found = None
    for started, nodeid in progress.started_at:
        if started > when:
            break
        found = nodeid
    return found


def _judge_crash(
    shard: Shard,
    progress: _Progress,
    outcome: ShardOutcome,
    stacks_path: Path,
    setup: WorkerSetup,
    now: float,
) -> None:
    """The worker ended without 'done': blame the running test, hand back the unstarted ones."""
    planned = outcome.collected if outcome.collected is not None else shard.nodeids
    culprit = progress.running
    if culprit is not None:
        outcome.culprit = culprit_result(
            shard,
            culprit,
            now - progress.running_since,
            outcome,
            timed_out=progress.timed_out,
            stacks=_read(stacks_path) if progress.timed_out is not None else "",
            memory=(progress.memory_exceeded, setup.memory_limit),
        )
    done = progress.finished | progress.released | ({culprit} if culprit else set())
    outcome.unstarted = tuple(n for n in planned if n not in done)


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace").strip() or "(no stacks written)"
    except OSError:
        return "(no stacks written)"


def _cleanup(*paths: Path) -> None:
    for path in paths:
        with contextlib.suppress(OSError):
            os.unlink(path)

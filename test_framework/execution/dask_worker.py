"""The Dask worker's side of a shard (issue 18): the task that runs it, and the warm zygote a
worker keeps between shards and runs.

Imported only where Dask runs (the client, when it registers the plugin; the workers, when they
unpickle a task): it needs `distributed`.

A task streams every execution event back as it happens (`Worker.log_event` on the shard's
topic, numbered within this execution of the task). Before it runs anything it checks that the
worker has the client's tree and environment for the shard (shard_check.py) and refuses it,
saying what differs, when not; and it reads the topic's events the scheduler already holds:
when Dask runs the task again because the worker that ran it died, the tests whose results the
dead execution delivered are not run again, only the rest. While the shard runs, the task polls
the shard's command queue and hands the client's commands to its pytest.

`WarmWorker`, a `WorkerPlugin`, holds a `WarmPool` (resident.py: the resident process's pool,
its zygote reused under the same fingerprints) in an event loop of its own (a blocking portal's
thread), so a worker pays interpreter start-up, pytest's import and the collection once for
every shard of every run against the same tree and environment, and forks each shard from it;
a crash, hang or leak in the fork is handled by the same runner as a local shard. Dask workers
are daemonic, so the zygote is a subprocess, never a multiprocessing child.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import shutil
import tempfile
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio
from anyio.from_thread import BlockingPortal, start_blocking_portal
from distributed import Queue, get_worker
from distributed.diagnostics.plugin import WorkerPlugin
from distributed.utils import sync

from ..events import AttemptFinished, ExecutionEvent
from ..models import NodeId, Shard
from ..planning import explicit_selection
from ..worker.protocol import Message
from .dask_stream import STOP
from .dask_tree import TreeUpload, Uploaded, moved_setup, moved_start
from .executor import ExecutorStart, LocalExecutor, SpawnLauncher
from .resident import WarmPool, warm_pool
from .runner import ShardOutcome, WorkerControl, WorkerSetup, run_shard
from .shard_check import differences, environment_inputs, shard_inputs
from .zygote import Zygote

PLUGIN_NAME = "test_framework-warm"
# Variables that say where things are on a machine: a worker keeps its own (the client's PATH or
# virtual environment may not exist on the worker's node); every other variable is the client's.
MACHINE_VARIABLES = frozenset(
    {
        "PATH",
        "VIRTUAL_ENV",
        "CONDA_PREFIX",
        "CONDA_DEFAULT_ENV",
        "PYTHONHOME",
        "PYTHONEXECUTABLE",
        "HOME",
        "USER",
        "LOGNAME",
        "SHELL",
        "HOSTNAME",
        "TMPDIR",
        "TEMP",
        "TMP",
        "PWD",
        "OLDPWD",
        "LD_LIBRARY_PATH",
        "XDG_RUNTIME_DIR",
    }
)
# How often a running task looks whether the client asked it to stop.
STOP_POLL_SECONDS = 0.25


class _Forward:
    """The remote side's listener: every event to the client, numbered within this execution
    of the task (Dask runs a task again when its worker died: `execution` tells them apart).
    `log_event` is safe from any thread (it hands the message to the worker's loop)."""

    def __init__(self, topic: str) -> None:
        self.worker = get_worker()
        self.topic = topic
        self.execution = uuid.uuid4().hex
        self.sent = 0
        self.control: WorkerControl | None = None  # the running pytest's, for the client

    def emit(self, event: ExecutionEvent) -> None:
        self.sent += 1
        self.worker.log_event(self.topic, [self.execution, self.sent, pickle.dumps(event)])

    def attached(self, shard_id: int, control: WorkerControl) -> None:
        self.control = control

    def detached(self, shard_id: int) -> None:
        self.control = None

    def command(self, message: Message) -> None:
        """A command the client's dispatcher sent (a release of the tail, a breaker's skip):
        to the shard's pytest, if it still runs."""
        if self.control is not None:
            self.control.send(message)


def worker_environment(
    client: Mapping[str, str], here: Mapping[str, str] | None = None
) -> dict[str, str]:
    """What a shard's pytest sees on this worker: the client's variables, except those that
    locate things on a machine (MACHINE_VARIABLES), which are this worker's."""
    here = os.environ if here is None else here
    env = {name: value for name, value in client.items() if name not in MACHINE_VARIABLES}
    env.update({name: value for name, value in here.items() if name in MACHINE_VARIABLES})
    return env


def delivered_before(worker: Any, topic: str) -> set[NodeId]:
    """The tests an earlier execution of this task finished and reported: the scheduler holds
    every event a dead worker sent before it died (it had them before it ran the task again),
    and the client gets them all, in that order, before any of this execution's."""
    events = sync(worker.loop, worker.scheduler.events, topic=topic)
    done: set[NodeId] = set()
    for _, (_, _, payload) in events or ():
        event = pickle.loads(payload)
        if isinstance(event, AttemptFinished):
            done.add(event.result.nodeid)
    return done


def without(shard: Shard, done: set[NodeId]) -> Shard:
    """The shard less the tests in `done`, its other tests named (by name only: the shard's
    ids are a part of each file, so positions among them would not be the file's)."""
    rest = tuple(n for n in shard.nodeids if n not in done)
    return replace(shard, nodeids=rest, selection=explicit_selection(rest))


def run_remote_shard(
    shard: Shard,
    setup: WorkerSetup,
    topic: str,
    expected: Mapping[str, str],
    warm: ExecutorStart | None = None,
    uploaded: Uploaded | None = None,
) -> tuple[ShardOutcome, str, int]:
    """The task: one shard on this Dask worker; its outcome, this execution's name and how
    many events it sent. A worker whose tree or environment differs from `expected` refuses
    the shard: its tests are reported crashed, saying what differs. With `warm` (the run's
    warm process, as the client would start it) the shard is forked from the worker's warm
    zygote; without, spawned. The client's commands arrive on the Dask queue
    `<topic>-commands`: STOP (Ctrl-C, a fail-fast stop) stops the shard's pytest as a local
    one would be; any other goes to the pytest (a release of its tail, a breaker's skip).
    With `uploaded`, the tree is the archive the client sent, unpacked on this worker."""
    forward = _Forward(topic)
    setup = replace(setup, env=worker_environment(setup.env))
    if warm is not None:
        warm = replace(warm, env=worker_environment(warm.env))
    if uploaded is not None:
        tree = _tree_here(forward.worker, uploaded)
        if tree is None:
            reason = (
                f"Dask worker {forward.worker.address} refused shard {shard.shard_id}: the "
                "tree the client uploaded is not unpacked here"
            )
            outcome = ShardOutcome(shard.shard_id, unstarted=shard.nodeids, output_tail=reason)
            return outcome, forward.execution, forward.sent
        setup = moved_setup(setup, uploaded.root, tree)
        warm = None if warm is None else moved_start(warm, uploaded.root, tree)
    here = {**shard_inputs(Path(setup.rootdir), shard.files), **environment_inputs()}
    differing = differences(expected, here)
    if differing:
        reason = (
            f"Dask worker {forward.worker.address} refused shard {shard.shard_id}: its tree or "
            f"environment differs from the client's: {'; '.join(differing)}"
        )
        outcome = ShardOutcome(shard.shard_id, unstarted=shard.nodeids, output_tail=reason)
        return outcome, forward.execution, forward.sent
    done = delivered_before(forward.worker, topic)
    if done:
        shard = without(shard, done)
        if not shard.nodeids:
            return ShardOutcome(shard.shard_id, completed=True), forward.execution, forward.sent
    commands = Queue(f"{topic}-commands")  # type: ignore[no-untyped-call]
    scratch = Path(tempfile.mkdtemp(prefix="test_framework-dask-"))
    local = replace(setup, scratch_dir=scratch)
    plugin = forward.worker.plugins.get(PLUGIN_NAME)
    try:
        if warm is not None and isinstance(plugin, WarmWorker) and plugin.portal is not None:
            outcome = plugin.portal.call(plugin.run, shard, local, forward, warm, commands)
        else:
            launcher = SpawnLauncher(local)
            outcome = anyio.run(
                until_stopped,
                lambda: run_shard(shard, local, forward, launcher),
                shard,
                commands,
                forward,
            )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return outcome, forward.execution, forward.sent


def _tree_here(worker: Any, uploaded: Uploaded) -> str | None:
    """Where this worker unpacked the tree the client uploaded (None: it did not)."""
    plugin = worker.plugins.get(uploaded.plugin_name)
    if not isinstance(plugin, TreeUpload) or plugin.path is None:
        return None
    return str(plugin.path)


def next_command(commands: Any) -> bytes | None:
    """The next item on the shard's command queue, or None after a poll's wait."""
    try:
        item = commands.get(timeout=STOP_POLL_SECONDS)
    except TimeoutError:
        return None
    return item if isinstance(item, bytes) else None


async def until_stopped(
    running: Callable[[], Awaitable[ShardOutcome]], shard: Shard, commands: Any, forward: _Forward
) -> ShardOutcome:
    """`running` to its end, or cancelled (its pytest stopped) once the client puts STOP on
    the shard's command queue; other commands go to the shard's pytest."""
    outcome = ShardOutcome(shard_id=shard.shard_id)
    async with anyio.create_task_group() as tg:

        async def watch() -> None:
            while True:
                # Each wait returns within the poll: a thread abandoned at the end is short.
                item = await anyio.to_thread.run_sync(
                    next_command, commands, abandon_on_cancel=True
                )
                if item == STOP:
                    tg.cancel_scope.cancel()
                    return
                if item is not None:
                    forward.command(pickle.loads(item))

        async def run() -> None:
            nonlocal outcome
            outcome = await running()
            tg.cancel_scope.cancel()

        tg.start_soon(watch)
        tg.start_soon(run)
    return outcome


class WarmWorker(WorkerPlugin):
    """A warm zygote per Dask worker, reused by every shard whose run would start the same
    warm process (resident.py's fingerprints: pytest arguments, folder, environment, and every
    file it imported or read unchanged); registered by the client, once per cluster (Dask
    keeps an idempotent plugin registered under its name, so later runs find it warm)."""

    name = PLUGIN_NAME
    idempotent = True

    def __init__(self) -> None:
        self.portal: BlockingPortal | None = None
        self.pool: WarmPool | None = None
        self._stack = contextlib.ExitStack()
        self._users = 0
        self._lock: anyio.Lock | None = None

    def setup(self, worker: Any) -> None:
        scratch = Path(tempfile.mkdtemp(prefix="test_framework-warm-"))
        self._stack.callback(shutil.rmtree, scratch, ignore_errors=True)
        portal = self._stack.enter_context(start_blocking_portal())
        self.pool = self._stack.enter_context(portal.wrap_async_context_manager(warm_pool(scratch)))
        self._lock = portal.call(_new_lock)
        self.portal = portal

    def teardown(self, worker: Any) -> None:
        self.portal = None
        self._stack.close()  # the zygote closed, the portal's loop ended, the folder removed

    async def run(
        self,
        shard: Shard,
        setup: WorkerSetup,
        forward: _Forward,
        warm: ExecutorStart,
        commands: Any,
    ) -> ShardOutcome:
        """The shard forked from the pool's zygote (started or replaced first when needed; a
        zygote other shards still fork from is never replaced: the shard is spawned then)."""
        assert self._lock is not None
        async with self._lock:
            zygote = await self._acquire(warm)
            self._users += 1
        try:
            executor = LocalExecutor(zygote)
            return await until_stopped(
                lambda: executor.run(shard, setup, forward), shard, commands, forward
            )
        finally:
            self._users -= 1

    async def warm_up(self, warm: ExecutorStart) -> None:
        assert self._lock is not None
        async with self._lock:
            await self._acquire(warm)

    async def _acquire(self, warm: ExecutorStart) -> Zygote | None:
        assert self.pool is not None
        if self._users:
            return await self.pool.share(warm)
        return await self.pool.acquire(warm)


async def _new_lock() -> anyio.Lock:
    return anyio.Lock()


def prepare(warm: ExecutorStart, uploaded: Uploaded | None, dask_worker: Any = None) -> None:
    """Run on every worker when a run opens (`Client.run`): start the warm zygote there now,
    while the client plans, so the first shard finds it collecting or collected."""
    worker = dask_worker or get_worker()
    plugin = worker.plugins.get(PLUGIN_NAME)
    if not isinstance(plugin, WarmWorker) or plugin.portal is None:
        return
    warm = replace(warm, env=worker_environment(warm.env))
    if uploaded is not None:
        here = _tree_here(worker, uploaded)
        if here is None:
            return
        warm = moved_start(warm, uploaded.root, here)
    plugin.portal.start_task_soon(plugin.warm_up, warm)

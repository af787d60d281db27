"""Shards on a Dask cluster: the executor seam's second implementation (issue 18, in progress).

Each shard is one Dask task (`pure=False`, a key unique to the run, shard and attempt). On the
Dask worker the task runs the shard exactly as this machine would with spawn isolation
(`run_shard` with a `SpawnLauncher`: a fresh `python -m pytest` in its own session, the
watchdog, TERM -> grace -> KILL), in a scratch folder of its own, and streams every execution
event back as it happens (`Worker.log_event` on a topic the client subscribed to, numbered, so
the client delivers them in order and knows when it has them all). The planner, limiter,
ledger, store and reporters are the same as for a local run; the workers get node ids and
selections, never pytest items.

Each task checks first that the worker has the client's tree and environment for the shard
(shard_check.py), and refuses it, saying what differs, when not.

Not yet built (the issue stays open): a warm zygote per Dask worker (a `WorkerPlugin`), work
stealing and the breaker's skips across the
cluster (a remote worker has no control channel); a worker that died has its whole shard run
again (its finished tests' results are dropped), not only the unfinished tests.
"""

from __future__ import annotations

import contextlib
import pickle
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import anyio

from ..errors import UsageError
from ..events import AttemptFinished, ExecutionEvent
from ..machine import cpu_count
from ..models import Collection, NodeId, Shard
from .executor import ExecutorFactory, ExecutorStart, SpawnLauncher
from .runner import ShardListener, ShardOutcome, WorkerControl, WorkerSetup, run_shard
from .shard_check import differences, environment_inputs, shard_inputs

TOPIC = "test_framework"
# After a task returned, how long its last events may take to arrive through the scheduler.
STRAGGLER_SECONDS = 10.0
# How often a running task looks whether the client asked it to stop.
STOP_POLL_SECONDS = 0.25
# How long the client tries to reach a scheduler before the run stops with a usage error.
CONNECT_SECONDS = 5


class _Forward:
    """The remote side's listener: every event to the client, numbered within this execution
    of the task (Dask runs a task again when its worker died: `execution` tells them apart)."""

    def __init__(self, topic: str) -> None:
        from distributed import get_worker

        self.worker = get_worker()
        self.topic = topic
        self.execution = uuid.uuid4().hex
        self.sent = 0

    def emit(self, event: ExecutionEvent) -> None:
        self.sent += 1
        self.worker.log_event(self.topic, [self.execution, self.sent, pickle.dumps(event)])

    def attached(self, shard_id: int, control: WorkerControl) -> None:
        pass  # commands to a remote worker: not yet

    def detached(self, shard_id: int) -> None:
        pass


def run_remote_shard(
    shard: Shard, setup: WorkerSetup, topic: str, expected: Mapping[str, str]
) -> tuple[ShardOutcome, str, int]:
    """The task: one shard on this Dask worker; its outcome, this execution's name and how
    many events it sent. A worker whose tree or environment differs from `expected`
    (shard_check.py) refuses the shard: its tests are reported crashed, saying what differs.
    The client sets the Dask event `<topic>-stop` to stop it (Ctrl-C, a fail-fast stop): the
    shard's pytest is then stopped as a local one would be."""
    forward = _Forward(topic)
    here = {**shard_inputs(Path(setup.rootdir), shard.files), **environment_inputs()}
    differing = differences(expected, here)
    if differing:
        reason = (
            f"Dask worker {forward.worker.address} refused shard {shard.shard_id}: its tree or "
            f"environment differs from the client's: {'; '.join(differing)}"
        )
        outcome = ShardOutcome(shard.shard_id, unstarted=shard.nodeids, output_tail=reason)
        return outcome, forward.execution, forward.sent
    scratch = Path(tempfile.mkdtemp(prefix="test_framework-dask-"))
    local = replace(setup, scratch_dir=scratch)
    try:
        outcome = anyio.run(_until_stopped, shard, local, forward, f"{topic}-stop")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return outcome, forward.execution, forward.sent


async def _until_stopped(
    shard: Shard, setup: WorkerSetup, forward: _Forward, stop_name: str
) -> ShardOutcome:
    from distributed import Event

    stop = Event(stop_name)  # type: ignore[no-untyped-call]
    outcome = ShardOutcome(shard_id=shard.shard_id)
    async with anyio.create_task_group() as tg:

        async def watch() -> None:
            # Each wait returns within the poll: a thread abandoned at the shard's end is short.
            while not await anyio.to_thread.run_sync(
                stop.wait, STOP_POLL_SECONDS, abandon_on_cancel=True
            ):
                pass
            tg.cancel_scope.cancel()

        async def run() -> None:
            nonlocal outcome
            outcome = await run_shard(shard, setup, forward, SpawnLauncher(setup))
            tg.cancel_scope.cancel()

        tg.start_soon(watch)
        tg.start_soon(run)
    return outcome


@dataclass
class _Delivery:
    """The client side of one shard's stream: events in their order, each once, and each
    test's result once. When the task's worker died, Dask runs the task again elsewhere: a new
    execution, whose events replace the old one's (late ones of the old are dropped) and whose
    results for tests the old one finished are dropped, so none is lost or counted twice."""

    listener: ShardListener
    execution: str | None = None
    next_number: int = 1
    waiting: dict[int, ExecutionEvent] = field(default_factory=dict)
    finished: set[NodeId] = field(default_factory=set)
    stale: set[str] = field(default_factory=set)
    expected: tuple[str, int] | None = None  # the execution that returned, its event count
    complete: anyio.Event = field(default_factory=anyio.Event)

    def receive(self, item: Any) -> None:
        _, (execution, number, payload) = item
        if execution in self.stale:
            return
        if execution != self.execution:
            if self.execution is not None:
                self.stale.add(self.execution)
            self.execution, self.next_number, self.waiting = execution, 1, {}
        if number < self.next_number or number in self.waiting:
            return  # delivered twice: once is enough
        self.waiting[number] = pickle.loads(payload)
        while self.next_number in self.waiting:
            self._deliver(self.waiting.pop(self.next_number))
            self.next_number += 1
        self._check()

    def _deliver(self, event: ExecutionEvent) -> None:
        if isinstance(event, AttemptFinished):
            if event.result.nodeid in self.finished:
                return
            self.finished.add(event.result.nodeid)
        self.listener.emit(event)

    def expect(self, execution: str, sent: int) -> None:
        self.expected = (execution, sent)
        self._check()

    def _check(self) -> None:
        if self.expected is None:
            return
        execution, sent = self.expected
        if self.execution == execution and self.delivered >= sent:
            self.complete.set()

    @property
    def delivered(self) -> int:
        return self.next_number - 1


@dataclass
class DaskExecutor:
    client: Any  # distributed.Client, asynchronous
    run_key: str
    futures: dict[str, Any] = field(default_factory=dict)
    environment: Mapping[str, str] = field(default_factory=environment_inputs)

    @property
    def early(self) -> bool:
        return True  # each worker collects its own files

    async def collected(self) -> Collection | None:
        return None

    def phases(self) -> Mapping[str, float]:
        return {}

    async def run(self, shard: Shard, setup: WorkerSetup, listener: ShardListener) -> ShardOutcome:
        key = f"{TOPIC}-{self.run_key}-shard{shard.shard_id}-attempt{shard.attempt}"
        delivery = _Delivery(listener)
        self.client.subscribe_topic(key, delivery.receive)
        try:
            expected = {
                **shard_inputs(Path(setup.rootdir), shard.files),
                **self.environment,
            }
            future = self.client.submit(
                run_remote_shard, shard, setup, key, expected, key=key, pure=False
            )
            self.futures[key] = future
            try:
                outcome, execution, sent = await future
            except BaseException:
                with anyio.CancelScope(shield=True), anyio.move_on_after(STRAGGLER_SECONDS):
                    await self._stop(key, future)
                raise
            delivery.expect(execution, sent)
            with anyio.move_on_after(STRAGGLER_SECONDS):
                await delivery.complete.wait()
            return outcome  # type: ignore[no-any-return]
        finally:
            self.futures.pop(key, None)
            self.client.unsubscribe_topic(key)

    async def _stop(self, key: str, future: Any) -> None:
        """Stop the task where it runs (its pytest TERM, grace, KILL), and forget it."""
        from distributed import Event

        await Event(f"{key}-stop", client=self.client).set()  # type: ignore[no-untyped-call]
        await self.client.cancel([future], force=True)

    def kill_all(self) -> None:
        for future in list(self.futures.values()):
            future.cancel()


def dask_executors(scheduler: str | None, run_key: str) -> ExecutorFactory:
    """Open a client for the run: to `scheduler`, or to a local cluster of processes (one
    worker per core) started for the run and closed with it."""

    @contextlib.asynccontextmanager
    async def factory(start: ExecutorStart) -> AsyncIterator[DaskExecutor]:
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise UsageError(
                "--executor dask needs Dask's distributed package: pip install "
                '"test_framework[dask]"'
            ) from None
        async with contextlib.AsyncExitStack() as stack:
            address: Any = scheduler
            if scheduler is None:
                cluster = await stack.enter_async_context(
                    LocalCluster(  # type: ignore[no-untyped-call]
                        n_workers=cpu_count(),
                        threads_per_worker=1,
                        processes=True,
                        dashboard_address=None,
                        asynchronous=True,
                    )
                )
                address = cluster
            try:
                client = await stack.enter_async_context(
                    Client(address, asynchronous=True, timeout=f"{CONNECT_SECONDS}s")  # type: ignore[no-untyped-call]
                )
            except OSError as exc:
                raise UsageError(
                    f"cannot reach the Dask scheduler at {scheduler}: {exc} (is `dask "
                    "scheduler` running there? --scheduler tcp://HOST:8786)"
                ) from None
            yield DaskExecutor(client, run_key)

    return factory

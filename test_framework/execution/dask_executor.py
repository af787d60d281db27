"""Shards on a Dask cluster: the executor seam's second implementation (issue 18, in progress).

Each shard is one Dask task (`pure=False`, a key unique to the run, shard and attempt). On the
Dask worker the task runs the shard exactly as this machine would with spawn isolation
(`run_shard` with a `SpawnLauncher`: a fresh `python -m pytest` in its own session, the
watchdog, TERM -> grace -> KILL), in a scratch folder of its own, and streams every execution
event back as it happens (`Worker.log_event` on a topic the client subscribed to, numbered, so
the client delivers them in order and knows when it has them all). The planner, limiter,
ledger, store and reporters are the same as for a local run; the workers get node ids and
selections, never pytest items.

Not yet built (the issue stays open): a warm zygote per Dask worker (a `WorkerPlugin`), the
collection fingerprint check per shard, rerunning a killed worker's unfinished tests
elsewhere without counting any twice, work stealing and the breaker's skips across the
cluster (a remote worker has no control channel), cancelling the cluster's tasks on Ctrl-C
beyond closing the client.
"""

from __future__ import annotations

import contextlib
import pickle
import shutil
import tempfile
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import anyio

from ..errors import UsageError
from ..events import ExecutionEvent
from ..machine import cpu_count
from ..models import Collection, Shard
from .executor import ExecutorFactory, ExecutorStart, SpawnLauncher
from .runner import ShardListener, ShardOutcome, WorkerControl, WorkerSetup, run_shard

TOPIC = "test_framework"
# After a task returned, how long its last events may take to arrive through the scheduler.
STRAGGLER_SECONDS = 10.0


class _Forward:
    """The remote side's listener: every event to the client, numbered."""

    def __init__(self, topic: str) -> None:
        from distributed import get_worker

        self.worker = get_worker()
        self.topic = topic
        self.sent = 0

    def emit(self, event: ExecutionEvent) -> None:
        self.sent += 1
        self.worker.log_event(self.topic, [self.sent, pickle.dumps(event)])

    def attached(self, shard_id: int, control: WorkerControl) -> None:
        pass  # commands to a remote worker: not yet

    def detached(self, shard_id: int) -> None:
        pass


def run_remote_shard(shard: Shard, setup: WorkerSetup, topic: str) -> tuple[ShardOutcome, int]:
    """The task: one shard on this Dask worker; its outcome and how many events it sent."""
    scratch = Path(tempfile.mkdtemp(prefix="test_framework-dask-"))
    local = replace(setup, scratch_dir=scratch)
    forward = _Forward(topic)
    try:
        outcome = anyio.run(run_shard, shard, local, forward, SpawnLauncher(local))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return outcome, forward.sent


@dataclass
class _Delivery:
    """The client side of one shard's stream: events in their order, each once."""

    listener: ShardListener
    next_number: int = 1
    waiting: dict[int, ExecutionEvent] = field(default_factory=dict)
    expected: int | None = None  # how many the task sent, once it returned
    complete: anyio.Event = field(default_factory=anyio.Event)

    def receive(self, item: Any) -> None:
        _, (number, payload) = item
        if number < self.next_number or number in self.waiting:
            return  # delivered twice: once is enough
        self.waiting[number] = pickle.loads(payload)
        while self.next_number in self.waiting:
            self.listener.emit(self.waiting.pop(self.next_number))
            self.next_number += 1
        self._check()

    def expect(self, sent: int) -> None:
        self.expected = sent
        self._check()

    def _check(self) -> None:
        if self.expected is not None and self.delivered >= self.expected:
            self.complete.set()

    @property
    def delivered(self) -> int:
        return self.next_number - 1


@dataclass
class DaskExecutor:
    client: Any  # distributed.Client, asynchronous
    run_key: str
    futures: dict[str, Any] = field(default_factory=dict)

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
            future = self.client.submit(run_remote_shard, shard, setup, key, key=key, pure=False)
            self.futures[key] = future
            outcome, sent = await future
            delivery.expect(sent)
            with anyio.move_on_after(STRAGGLER_SECONDS):
                await delivery.complete.wait()
            return outcome  # type: ignore[no-any-return]
        finally:
            self.futures.pop(key, None)
            self.client.unsubscribe_topic(key)

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
                    Client(address, asynchronous=True, timeout="10s")  # type: ignore[no-untyped-call]
                )
            except OSError as exc:
                raise UsageError(
                    f"cannot reach the Dask scheduler at {scheduler}: {exc} (is `dask "
                    "scheduler` running there? --scheduler tcp://HOST:8786)"
                ) from None
            yield DaskExecutor(client, run_key)

    return factory

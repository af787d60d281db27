"""The client's view of a shard running on a Dask worker (issue 18): its events delivered in
order and once, and what it is doing, from those events.

Events travel numbered per execution of the task (Dask runs a task again when its worker
died); `Delivery` puts each execution's in order, drops duplicates and counts each test's
result once. `RemoteProgress` follows the running test and the waiting count the dispatcher's
control of a shard needs (work stealing, the session timeout), since the worker's board is on
another machine; `Following` hands that control to the dispatcher once the shard started.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from typing import Any

import anyio

from ..events import (
    AttemptFinished,
    ExecutionEvent,
    ShardCollected,
    ShardStarted,
    TestsReleased,
    TestStarted,
)
from ..models import NodeId
from .runner import ShardListener, WorkerControl

# On a shard's command queue: stop (Ctrl-C, a fail-fast stop); anything else is a pickled
# protocol command for its pytest (both sides of the queue import it from here).
STOP = b"stop"


@dataclass
class _Stream:
    """One execution's events: the next number to deliver, and those that came early."""

    next_number: int = 1
    waiting: dict[int, ExecutionEvent] = field(default_factory=dict)


@dataclass
class RemoteProgress:
    """What a shard running on a Dask worker is doing, as its events tell: the test running
    and how many wait, for the dispatcher's control of it (work stealing, the session
    timeout's names). Its worker's board is on another machine; its events are here."""

    collected: tuple[NodeId, ...]
    now: NodeId | None = None
    finished: set[NodeId] = field(default_factory=set)
    released: set[NodeId] = field(default_factory=set)
    started: bool = False

    def seen(self, event: ExecutionEvent) -> None:
        if isinstance(event, ShardStarted):
            self.started = True
            self.collected = event.nodeids
        elif isinstance(event, ShardCollected):
            self.collected = event.nodeids
        elif isinstance(event, TestStarted):
            self.now = event.nodeid
        elif isinstance(event, AttemptFinished):
            self.finished.add(event.result.nodeid)
            if self.now == event.result.nodeid:
                self.now = None
        elif isinstance(event, TestsReleased):
            self.released.update(event.nodeids)

    def running(self) -> NodeId | None:
        return self.now

    def waiting(self) -> int:
        """Tests not finished, not handed off and not running."""
        done = sum(1 for n in self.collected if n in self.finished or n in self.released)
        return max(0, len(self.collected) - done - (1 if self.now is not None else 0))


@dataclass
class Following:
    """Passes a remote shard's events on, keeps its progress, and hands the dispatcher the
    shard's control once it started (`detach` when it ends)."""

    listener: ShardListener
    shard_id: int
    progress: RemoteProgress
    control: WorkerControl
    handed: bool = False  # the dispatcher holds the control

    def emit(self, event: ExecutionEvent) -> None:
        self.progress.seen(event)
        self.listener.emit(event)
        if isinstance(event, ShardStarted) and not self.handed:
            self.handed = True
            self.listener.attached(self.shard_id, self.control)

    def attached(self, shard_id: int, control: WorkerControl) -> None:
        pass  # a remote worker's control stays there; `control` stands for it here

    def detached(self, shard_id: int) -> None:
        pass

    def detach(self) -> None:
        if self.handed:
            self.handed = False
            self.listener.detached(self.shard_id)


@dataclass
class Delivery:
    """The client side of one shard's events: each execution's in their order, each once, and
    each test's result once. When the task's worker died, Dask runs the task again elsewhere (a
    new execution, which runs only the tests whose results did not reach the scheduler): the
    dead execution's events still count, and a result both report counts once."""

    listener: ShardListener
    streams: dict[str, _Stream] = field(default_factory=dict)
    finished: set[NodeId] = field(default_factory=set)
    expected: tuple[str, int] | None = None  # the execution that returned, its event count
    complete: anyio.Event = field(default_factory=anyio.Event)

    def receive(self, item: Any) -> None:
        _, (execution, number, payload) = item
        stream = self.streams.setdefault(execution, _Stream())
        if number < stream.next_number or number in stream.waiting:
            return  # delivered twice: once is enough
        stream.waiting[number] = pickle.loads(payload)
        while stream.next_number in stream.waiting:
            self._deliver(stream.waiting.pop(stream.next_number))
            stream.next_number += 1
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
        stream = self.streams.get(execution)
        if sent == 0 or (stream is not None and stream.next_number - 1 >= sent):
            self.complete.set()

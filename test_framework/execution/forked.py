"""Processes another process forks for the engine and reaps: a zygote's shard workers, a base
layer's project layers. Their parent says `Forked` (request -> pid) and `Exited` (pid ->
status) on its channel; `ForkedChildren` routes those to the waiting engine side, and
`ForkedProcess` is the `WorkerHandle` the runner or the zygote follows.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass, field
from pathlib import Path

import anyio
from anyio.abc import ByteReceiveStream, SocketStream

from ..worker.protocol import Exited, Forked, Message
from .output import file_tail
from .process import signal_group


@dataclass
class ForkedChild:
    pid: int | None = None
    forked: anyio.Event = field(default_factory=anyio.Event)
    exited: anyio.Event = field(default_factory=anyio.Event)
    returncode: int | None = None


class ForkedChildren:
    """The children asked of one parent, by the request that asked for each and by pid."""

    def __init__(self) -> None:
        self._by_request: dict[int, ForkedChild] = {}
        self._by_pid: dict[int, ForkedChild] = {}

    def expect(self, request: int) -> ForkedChild:
        child = self._by_request[request] = ForkedChild()
        return child

    def forget(self, request: int) -> None:
        self._by_request.pop(request, None)

    def dispatch(self, message: Message) -> bool:
        """Route the parent's `Forked` or `Exited`; False for any other message."""
        if isinstance(message, Forked):
            child = self._by_request.get(message.shard)
            if child is not None:
                child.pid = message.pid
                self._by_pid[message.pid] = child
                child.forked.set()
            return True
        if isinstance(message, Exited):
            child = self._by_pid.pop(message.pid, None)
            if child is not None:
                child.returncode = message.returncode
                child.exited.set()
            return True
        return False

    def orphan_everyone(self) -> None:
        """The parent is gone: nobody will report these children's exits; kill and release."""
        for child in list(self._by_request.values()):
            if child.pid is not None and not child.exited.is_set():
                signal_group(child.pid, signal.SIGKILL)
                child.returncode = -signal.SIGKILL
            child.forked.set()
            child.exited.set()


class ForkedProcess:
    """A forked child as a `WorkerHandle`: its exit status comes from its parent, its output
    from a file."""

    def __init__(
        self, child: ForkedChild, channel: SocketStream, output: Path, full_collection: bool
    ) -> None:
        assert child.pid is not None
        self.full_collection = full_collection
        self._child = child
        self._pid = child.pid
        self._channel = channel
        self._output = output

    @property
    def pid(self) -> int:
        return self._pid

    @property
    def channel(self) -> ByteReceiveStream:
        return self._channel

    @property
    def returncode(self) -> int | None:
        return self._child.returncode

    async def wait(self) -> None:
        await self._child.exited.wait()

    def output_text(self) -> str:
        return file_tail(self._output)

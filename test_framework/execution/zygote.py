"""The engine's side of the zygote: one warm pytest process per run that collects once and forks
a child per shard, so a shard starts in milliseconds instead of paying interpreter start-up,
imports and collection again (see fork_server.py for the zygote's side).

The zygote is started like any worker (own session, drained output) and lives in the run's task
group. Commands go over a SOCK_SEQPACKET socket, one datagram each, with the shard's protocol
socket attached; replies (`forked`, `exited`) come back on the zygote's protocol channel, read by
`run`, which wakes the shard waiting for them. Forked children are the zygote's to reap, so their
exit status arrives as a message; if the zygote dies, every waiter is woken with an unknown
status and the orchestrator falls back to spawning.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import ByteReceiveStream, SocketStream, TaskStatus

from .constants import ENV_ZYGOTE, ENV_ZYGOTE_EARLY
from .process import (
    OUTPUT_TAIL_BYTES,
    Launcher,
    ShardFiles,
    WorkerHandle,
    signal_group,
    spawn_worker,
)
from .protocol import Message, read_messages


class ZygoteGone(RuntimeError):
    """The zygote exited or never started: shards must be spawned instead."""


@dataclass
class _Child:
    pid: int | None = None
    forked: anyio.Event = field(default_factory=anyio.Event)
    exited: anyio.Event = field(default_factory=anyio.Event)
    returncode: int | None = None


@dataclass
class ZygoteCollection:
    rootdir: str = ""
    nodeids: tuple[str, ...] = ()
    errors: list[tuple[str, str, bool]] = field(default_factory=list)
    positionals: tuple[str, ...] = ()
    serial: tuple[str, ...] = ()
    resources: dict[str, tuple[str, ...]] = field(default_factory=dict)


class ForkedWorker:
    """A shard's worker forked from the zygote; its exit status comes from the zygote."""

    def __init__(self, child: _Child, channel: SocketStream, output: Path) -> None:
        assert child.pid is not None
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
        try:
            with self._output.open("rb") as handle:
                size = handle.seek(0, os.SEEK_END)
                handle.seek(max(0, size - OUTPUT_TAIL_BYTES))
                return handle.read().decode("utf-8", "replace")
        except OSError:
            return ""


@dataclass
class ForkOrSpawn:
    """Fork from the zygote while it lives; spawn a fresh worker when it does not."""

    zygote: Zygote | None
    spawn: Launcher

    @contextlib.asynccontextmanager
    async def launch(
        self, shard_id: int, files: Sequence[str], paths: ShardFiles
    ) -> AsyncIterator[WorkerHandle]:
        async with contextlib.AsyncExitStack() as stack:
            worker: WorkerHandle | None = None
            if self.zygote is not None and self.zygote.alive:
                with contextlib.suppress(ZygoteGone):
                    worker = await stack.enter_async_context(
                        self.zygote.launch(shard_id, files, paths)
                    )
            if worker is None:
                worker = await stack.enter_async_context(self.spawn.launch(shard_id, files, paths))
            yield worker


class Zygote:
    def __init__(
        self,
        argv: Sequence[str],
        *,
        cwd: str,
        env: Mapping[str, str],
        scratch: Path,
        grace: float,
        early: bool = False,
    ) -> None:
        self.argv = list(argv)
        self.cwd = cwd
        self.env = env
        self.scratch = scratch
        self.grace = grace
        self.early = early  # forks before collecting: each child collects its own files
        self.collection = ZygoteCollection()
        self.collected = anyio.Event()
        self.alive = False
        self.output_tail = ""
        self.returncode: int | None = None
        self.pid: int | None = None
        self._control: socket.socket | None = None
        self._by_shard: dict[int, _Child] = {}
        self._by_pid: dict[int, _Child] = {}

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Start the zygote and follow its channel until it exits; run inside the task group."""
        engine_end, zygote_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            async with spawn_worker(
                self.argv,
                cwd=self.cwd,
                env=self.env,
                protocol_env={
                    ENV_ZYGOTE: str(zygote_end.fileno()),
                    **({ENV_ZYGOTE_EARLY: "1"} if self.early else {}),
                },
                grace=self.grace,
                extra_fds=(zygote_end.fileno(),),
            ) as worker:
                zygote_end.close()
                self._control = engine_end
                self.pid = worker.pid
                self.alive = True
                task_status.started()
                try:
                    async for message in read_messages(worker.channel):
                        self._dispatch(message)
                    with anyio.move_on_after(self.grace):
                        await worker.wait()
                    self.returncode = worker.returncode
                    self.output_tail = worker.output_text()
                finally:
                    # Whoever waits for the collection learns here that none is coming.
                    self.alive = False
                    self.collected.set()
                    self._orphan_everyone()
        finally:
            zygote_end.close()
            engine_end.close()

    def _dispatch(self, message: Message) -> None:
        data = message.data
        if message.event == "hello":
            self.collection.rootdir = data["rootdir"]
            self.collection.positionals = tuple(data.get("args") or ())
        elif message.event in ("collect_error", "collect_skip"):
            self.collection.errors.append(
                (data["nodeid"], data.get("longrepr") or "", message.event == "collect_skip")
            )
        elif message.event == "collected":
            self.collection.nodeids = tuple(data["nodeids"])
            self.collection.serial = tuple(str(n) for n in data.get("serial") or ())
            self.collection.resources = {
                str(n): tuple(str(r) for r in names)
                for n, names in (data.get("resources") or {}).items()
            }
            self.collected.set()
        elif message.event == "forked":
            child = self._by_shard.get(int(data["shard"]))
            if child is not None:
                child.pid = int(data["pid"])
                self._by_pid[child.pid] = child
                child.forked.set()
        elif message.event == "exited":
            child = self._by_pid.pop(int(data["pid"]), None)
            if child is not None:
                child.returncode = int(data["returncode"])
                child.exited.set()

    def _orphan_everyone(self) -> None:
        """The zygote is gone: nobody will report these children's exits; kill and release."""
        for child in list(self._by_shard.values()):
            if child.pid is not None and not child.exited.is_set():
                signal_group(child.pid, signal.SIGKILL)
                child.returncode = -signal.SIGKILL
            child.forked.set()
            child.exited.set()

    def close(self) -> None:
        """No more forks: the zygote leaves its loop and ends its pytest session."""
        if self._control is not None:
            with contextlib.suppress(OSError):
                self._control.shutdown(socket.SHUT_RDWR)

    @contextlib.asynccontextmanager
    async def launch(
        self, shard_id: int, files: Sequence[str], paths: ShardFiles
    ) -> AsyncIterator[ForkedWorker]:
        del files  # the zygote already collected them
        if not self.alive or self._control is None:
            raise ZygoteGone(f"the zygote is not running (exit status {self.returncode})")
        parent, child_end = socket.socketpair()
        output = self.scratch / f"shard-{shard_id}.out"
        child = _Child()
        self._by_shard[shard_id] = child
        command: dict[str, Any] = {
            "shard": shard_id,
            "select": str(paths.select),
            "output": str(output),
            "stacks": str(paths.stacks),
            "board": str(paths.board),
        }
        try:
            socket.send_fds(self._control, [json.dumps(command).encode()], [child_end.fileno()])
        except OSError as exc:
            parent.close()
            raise ZygoteGone(f"cannot reach the zygote: {exc}") from None
        finally:
            child_end.close()
        await child.forked.wait()
        if child.pid is None:
            parent.close()
            raise ZygoteGone("the zygote exited before it forked the shard")
        parent.setblocking(False)
        channel = await SocketStream.from_socket(parent)
        try:
            yield ForkedWorker(child, channel, output)
        finally:
            with anyio.CancelScope(shield=True):
                await self._stop(child)
                await channel.aclose()
                self._by_shard.pop(shard_id, None)
                # The output file stays (in the run's scratch folder, removed with it): the runner
                # reads its tail after this block when the worker crashed.

    async def _stop(self, child: _Child) -> None:
        """TERM the child's group, wait `grace`, KILL the group (leaked processes included)."""
        assert child.pid is not None
        if not child.exited.is_set():
            signal_group(child.pid, signal.SIGTERM)
            with anyio.move_on_after(self.grace):
                await child.exited.wait()
        signal_group(child.pid, signal.SIGKILL)
        with anyio.move_on_after(self.grace):
            await child.exited.wait()

"""The engine's side of the zygote: one warm pytest process per run that collects once and forks
a child per shard, so a shard starts in milliseconds instead of paying interpreter start-up,
imports and collection again (see fork_server.py for the zygote's side).

The zygote is started like any worker (own session, drained output) and lives in the task group
of whoever started it (the local executor). Commands (`Fork`) go over a SOCK_SEQPACKET socket, one
datagram each, with the shard's protocol socket attached; replies (`Forked`, `Exited`) come back
on the zygote's protocol channel, read by `run`, which wakes the shard waiting for them. Forked
children are the zygote's to reap, so their exit status arrives as a message; if the zygote dies,
every waiter is woken with an unknown status and the executor falls back to spawning.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import anyio
from anyio.abc import ByteReceiveStream, SocketStream, TaskStatus

from ..models import Collection, Shard
from ..worker.protocol import (
    ENV_PRELOAD,
    ENV_REPORTS,
    ENV_ZYGOTE,
    ENV_ZYGOTE_EARLY,
    Collected,
    CollectFailed,
    Exited,
    Fork,
    Forked,
    Hello,
    Message,
    Warned,
    encode,
    reports_folder,
)
from .channel import read_messages
from .collect import terminal_of
from .output import file_tail
from .prestart import Prestarted
from .process import (
    CannotStart,
    ScratchFiles,
    Starter,
    WorkerHandle,
    signal_group,
    spawn_worker,
    stop_forked,
)


class ZygoteGone(RuntimeError):
    """The zygote exited or never started: shards must be spawned instead."""


@dataclass
class _Child:
    pid: int | None = None
    forked: anyio.Event = field(default_factory=anyio.Event)
    exited: anyio.Event = field(default_factory=anyio.Event)
    returncode: int | None = None


class ForkedWorker:
    """A shard's worker forked from the zygote; its exit status comes from the zygote."""

    def __init__(
        self, child: _Child, channel: SocketStream, output: Path, full_collection: bool
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
        preload: tuple[str, ...] = (),
        protocol_env: Mapping[str, str] | None = None,
        starter: Starter | None = None,
        adopt: Prestarted | None = None,
    ) -> None:
        self.argv = list(argv)
        self.adopt = adopt  # already running, started before the engine
        self.starter = starter  # how it starts: spawned, or forked from a base layer
        self.protocol_env = dict(protocol_env or {})
        self.cwd = cwd
        self.env = env
        self.scratch = scratch
        self.grace = grace
        self.early = early  # forks before collecting: each child collects its own files
        self.preload = preload  # modules an early zygote imports before it forks
        self.collection = Collection(rootdir="", nodeids=())
        self.collected = anyio.Event()
        self._errors: list[CollectFailed] = []
        self._warned: list[Warned] = []
        self.alive = False
        self.output_tail = ""
        self.returncode: int | None = None
        self.pid: int | None = None
        self.start_note = ""  # why a starter could not start it (it was spawned instead)
        self.spawned_at: float | None = None  # wall-clock times, for the run's split
        self.configured_at: float | None = None
        self._control: socket.socket | None = None
        self._by_shard: dict[int, _Child] = {}
        self._by_pid: dict[int, _Child] = {}

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Start the zygote and follow its channel until it exits; run inside the task group.
        Adopted when it was started before the engine (prestart.py); else forked from a base
        layer when it has one that can, else spawned."""
        self.spawned_at = time.time()
        if self.adopt is not None:
            await self._run_adopted(self.adopt, task_status)
            return
        if self.starter is not None:
            try:
                await self._run(self.starter, task_status)
                return
            except CannotStart as exc:
                self.start_note = str(exc)
        await self._run(spawn_worker, task_status)

    async def _run(self, starter: Starter, task_status: TaskStatus[None]) -> None:
        engine_end, zygote_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            async with starter(
                self.argv,
                cwd=self.cwd,
                env=self.env,
                protocol_env={
                    ENV_REPORTS: str(reports_folder(self.scratch)),
                    **self.protocol_env,
                    **({ENV_ZYGOTE_EARLY: "1"} if self.early else {}),
                    **self._preload_env(),
                },
                grace=self.grace,
                passed_fds={ENV_ZYGOTE: zygote_end.fileno()},
            ) as worker:
                zygote_end.close()
                await self._follow(worker, engine_end, task_status)
        finally:
            zygote_end.close()
            engine_end.close()

    async def _run_adopted(self, prestarted: Prestarted, task_status: TaskStatus[None]) -> None:
        """Follow a zygote started before the engine (prestart.py): tell it its kind first."""
        self.spawned_at = prestarted.spawned_at
        preload = self._preload_env().get(ENV_PRELOAD)
        prestarted.tell_mode(self.early, Path(preload) if preload else None)
        async with prestarted.adopt(self.grace) as worker:
            await self._follow(worker, prestarted.control, task_status)

    async def _follow(
        self, worker: WorkerHandle, control: socket.socket, task_status: TaskStatus[None]
    ) -> None:
        self._control = control
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

    def _preload_env(self) -> dict[str, str]:
        if not (self.early and self.preload):
            return {}
        path = self.scratch / "preload.txt"
        path.write_text("\n".join(self.preload) + "\n", encoding="utf-8")
        return {ENV_PRELOAD: str(path)}

    def _dispatch(self, message: Message) -> None:
        if isinstance(message, Hello):
            if self.configured_at is None:
                self.configured_at = time.time()
            self.collection = Collection(message.rootdir, (), positionals=message.args)
        elif isinstance(message, CollectFailed):
            self._errors.append(message)
        elif isinstance(message, Warned):
            self._warned.append(message)
        elif isinstance(message, Collected):
            self.collection = Collection(
                rootdir=self.collection.rootdir,
                nodeids=message.nodeids,
                errors=tuple(self._errors),
                positionals=self.collection.positionals,
                serial=message.serial,
                resources=dict(message.resources or {}),
                read=dict.fromkeys(message.read, ""),
                modules=message.modules,
                terminal=terminal_of(message),
                warnings=tuple(self._warned),
                collectors=message.collectors,
            )
            self.collected.set()
        elif isinstance(message, Forked):
            child = self._by_shard.get(message.shard)
            if child is not None:
                child.pid = message.pid
                self._by_pid[child.pid] = child
                child.forked.set()
        elif isinstance(message, Exited):
            child = self._by_pid.pop(message.pid, None)
            if child is not None:
                child.returncode = message.returncode
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
    async def launch(self, shard: Shard, paths: ScratchFiles) -> AsyncIterator[ForkedWorker]:
        shard_id = shard.shard_id
        if not self.alive or self._control is None:
            raise ZygoteGone(f"the zygote is not running (exit status {self.returncode})")
        parent, child_end = socket.socketpair()
        output = self.scratch / f"shard-{shard_id}.out"
        child = _Child()
        self._by_shard[shard_id] = child
        full = shard.full_collection
        command = Fork(
            shard_id, str(paths.select), str(output), str(paths.stacks), str(paths.board), full
        )
        try:
            socket.send_fds(self._control, [encode(command)], [child_end.fileno()])
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
            yield ForkedWorker(child, channel, output, full_collection=full or not self.early)
        finally:
            with anyio.CancelScope(shield=True):
                await self._stop(child)
                await channel.aclose()
                self._by_shard.pop(shard_id, None)
                # The output file stays (in the run's scratch folder, removed with it): the runner
                # reads its tail after this block when the worker crashed.

    async def _stop(self, child: _Child) -> None:
        assert child.pid is not None
        await stop_forked(child.pid, child.exited, self.grace)

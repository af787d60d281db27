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
import socket
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path

import anyio
from anyio.abc import SocketStream, TaskStatus

from ..models import Collection, Shard
from ..worker.protocol import (
    ENV_PRELOAD,
    ENV_REPORTS,
    ENV_ZYGOTE,
    ENV_ZYGOTE_EARLY,
    Collected,
    CollectFailed,
    Fork,
    Hello,
    Message,
    Warned,
    encode,
    reports_folder,
)
from .channel import read_messages
from .collect import terminal_of
from .forked import ForkedChild, ForkedChildren, ForkedProcess
from .prestart import Prestarted
from .process import (
    CannotStart,
    ScratchFiles,
    Starter,
    WorkerHandle,
    spawn_worker,
    stop_forked,
)


class ZygoteGone(RuntimeError):
    """The zygote exited or never started: shards must be spawned instead."""


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
        self._children = ForkedChildren()

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
            self._children.orphan_everyone()

    def _preload_env(self) -> dict[str, str]:
        if not (self.early and self.preload):
            return {}
        path = self.scratch / "preload.txt"
        path.write_text("\n".join(self.preload) + "\n", encoding="utf-8")
        return {ENV_PRELOAD: str(path)}

    def _dispatch(self, message: Message) -> None:
        if self._children.dispatch(message):
            return
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

    def close(self) -> None:
        """No more forks: the zygote leaves its loop and ends its pytest session."""
        if self._control is not None:
            with contextlib.suppress(OSError):
                self._control.shutdown(socket.SHUT_RDWR)

    @contextlib.asynccontextmanager
    async def launch(self, shard: Shard, paths: ScratchFiles) -> AsyncIterator[ForkedProcess]:
        shard_id = shard.shard_id
        if not self.alive or self._control is None:
            raise ZygoteGone(f"the zygote is not running (exit status {self.returncode})")
        parent, child_end = socket.socketpair()
        output = self.scratch / f"shard-{shard_id}.out"
        child = self._children.expect(shard_id)
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
            yield ForkedProcess(child, channel, output, full_collection=full or not self.early)
        finally:
            with anyio.CancelScope(shield=True):
                await self._stop(child)
                await channel.aclose()
                self._children.forget(shard_id)
                # The output file stays (in the run's scratch folder, removed with it): the runner
                # reads its tail after this block when the worker crashed.

    async def _stop(self, child: ForkedChild) -> None:
        assert child.pid is not None
        await stop_forked(child.pid, child.exited, self.grace)

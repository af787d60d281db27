"""Worker processes: spawn in their own session, drain, stop TERM -> grace -> KILL, always reap.

Every worker is a process-group leader (`start_new_session`), so stopping it also stops whatever its
tests started. The child protocol travels over one end of a socketpair handed down as an inherited
descriptor; stdout and stderr are merged and drained into a bounded tail kept for crash reports.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import anyio
from anyio.abc import ByteReceiveStream, Process, SocketStream

from ..models import Shard
from ..worker.protocol import ENV_CHANNEL, PROTOCOL_ENV_PREFIX
from .output import OUTPUT_TAIL_BYTES


@dataclass
class OutputTail:
    """The last bytes a worker wrote to stdout/stderr: enough to explain a crash, bounded."""

    limit: int = OUTPUT_TAIL_BYTES
    chunks: bytearray = field(default_factory=bytearray)

    def feed(self, data: bytes) -> None:
        self.chunks.extend(data)
        if len(self.chunks) > 2 * self.limit:
            del self.chunks[: len(self.chunks) - self.limit]

    def text(self) -> str:
        return bytes(self.chunks[-self.limit :]).decode("utf-8", "replace")


class WorkerHandle(Protocol):
    """A running worker, spawned or forked: what a shard's runner needs of it."""

    @property
    def pid(self) -> int: ...
    @property
    def channel(self) -> ByteReceiveStream: ...
    @property
    def returncode(self) -> int | None: ...
    @property
    def full_collection(self) -> bool:
        """Whether it collected the whole selection before narrowing to its shard, as pytest
        would (a child of a collecting zygote, or a worker started with every file)."""
        ...

    async def wait(self) -> None: ...
    def output_text(self) -> str: ...


@dataclass(frozen=True, slots=True)
class ScratchFiles:
    """The files one shard's worker and the engine share, in the run's scratch folder."""

    select: Path  # JSON: which tests of the files the worker runs
    stacks: Path  # where faulthandler dumps every thread's stack on SIGUSR1
    board: Path  # the progress board (board.py): which test runs, since when

    @classmethod
    def for_shard(cls, scratch: Path, shard_id: int) -> ScratchFiles:
        stem = scratch / f"shard-{shard_id}"
        return cls(
            select=stem.with_suffix(".select.json"),
            stacks=stem.with_suffix(".stacks.txt"),
            board=stem.with_suffix(".board"),
        )


class CannotStart(RuntimeError):
    """A starter cannot start this process (its base is gone, another folder): spawn it."""


class Starter(Protocol):
    """Starts a long-lived pytest process (a zygote): spawned, or forked from a base layer."""

    def __call__(
        self,
        argv: Sequence[str],
        *,
        cwd: str,
        env: Mapping[str, str],
        protocol_env: Mapping[str, str] | None = None,
        grace: float = 2.0,
        passed_fds: Mapping[str, int] | None = None,
    ) -> AbstractAsyncContextManager[WorkerHandle]: ...


class Launcher(Protocol):
    """Starts one shard's worker: a fresh interpreter (spawn) or a fork of the zygote."""

    def launch(
        self, shard: Shard, paths: ScratchFiles
    ) -> AbstractAsyncContextManager[WorkerHandle]: ...


@dataclass
class Worker:
    """A spawned worker: an anyio Process whose merged stdout/stderr is drained into a tail."""

    process: Process
    channel: SocketStream
    output: OutputTail
    full_collection: bool = False

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def returncode(self) -> int | None:
        return self.process.returncode

    async def wait(self) -> None:
        await self.process.wait()

    def output_text(self) -> str:
        return self.output.text()


def signal_group(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signum)


async def stop_process_group(process: Process, grace: float) -> None:
    """TERM the group, wait `grace` seconds, KILL the group; reap the leader either way."""
    if process.returncode is None:
        signal_group(process.pid, signal.SIGTERM)
        with anyio.move_on_after(grace):
            await process.wait()
    # Always KILL the whole group: the leader may be gone while its children live on.
    signal_group(process.pid, signal.SIGKILL)
    await process.wait()


async def stop_forked(pid: int, exited: anyio.Event, grace: float) -> None:
    """TERM the group of a process another one forked (its exit arrives as `exited`), wait
    `grace`, KILL the group (leaked processes included)."""
    if not exited.is_set():
        signal_group(pid, signal.SIGTERM)
        # One stopped as it starts may not lead its own group yet (setsid).
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        with anyio.move_on_after(grace):
            await exited.wait()
    signal_group(pid, signal.SIGKILL)
    with anyio.move_on_after(grace):
        await exited.wait()


async def _drain(process: Process, tail: OutputTail) -> None:
    if process.stdout is None:
        return
    with contextlib.suppress(
        anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError
    ):
        async for chunk in process.stdout:
            tail.feed(chunk)


@contextlib.asynccontextmanager
async def spawn_worker(
    argv: Sequence[str],
    *,
    cwd: str,
    env: Mapping[str, str],
    protocol_env: Mapping[str, str] | None = None,
    grace: float = 2.0,
    passed_fds: Mapping[str, int] | None = None,
) -> AsyncIterator[Worker]:
    """Start `python -m pytest`-like argv with the protocol channel; clean up on every exit path.
    `passed_fds` are more descriptors the child inherits, each named by the variable that
    tells it the number.

    Protocol variables inherited from an enclosing engine run (the engine testing itself) are
    dropped, so a nested run never obeys its parent's selection or writes to its channel.
    """
    parent_sock, child_sock = socket.socketpair()
    try:
        child_env = {k: v for k, v in env.items() if not k.startswith(PROTOCOL_ENV_PREFIX)}
        child_env.update(protocol_env or {})
        child_env[ENV_CHANNEL] = str(child_sock.fileno())
        passed = dict(passed_fds or {})
        child_env.update((name, str(fd)) for name, fd in passed.items())
        process = await anyio.open_process(
            [sys.executable, *argv],
            stdin=None,
            stdout=-1,
            stderr=-2,  # STDOUT: one stream, one tail
            cwd=cwd,
            env=child_env,
            start_new_session=True,
            pass_fds=(child_sock.fileno(), *passed.values()),
        )
    except BaseException:
        parent_sock.close()
        child_sock.close()
        raise
    child_sock.close()
    parent_sock.setblocking(False)
    channel = await SocketStream.from_socket(parent_sock)
    tail = OutputTail()
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(_drain, process, tail)
            try:
                yield Worker(process=process, channel=channel, output=tail)
            finally:
                with anyio.CancelScope(shield=True):
                    await stop_process_group(process, grace)
                    await channel.aclose()
                    tg.cancel_scope.cancel()
    finally:
        with anyio.CancelScope(shield=True):
            await process.aclose()


async def run_to_end(
    argv: Sequence[str],
    *,
    cwd: str,
    env: Mapping[str, str],
    protocol_env: Mapping[str, str] | None = None,
    limit: int = 4 * 1024 * 1024,
    grace: float = 2.0,
) -> tuple[int, str]:
    """Run a short-lived helper (`python` argv, no protocol channel) in its own session to its
    end: its exit status and its merged output (the last `limit` bytes). Interrupted, its
    group is stopped TERM -> grace -> KILL and reaped, as a worker's is."""
    child_env = {k: v for k, v in env.items() if not k.startswith(PROTOCOL_ENV_PREFIX)}
    child_env.update(protocol_env or {})
    process = await anyio.open_process(
        [sys.executable, *argv],
        stdin=None,
        stdout=-1,
        stderr=-2,
        cwd=cwd,
        env=child_env,
        start_new_session=True,
    )
    tail = OutputTail(limit)
    try:
        await _drain(process, tail)
        await process.wait()
    finally:
        with anyio.CancelScope(shield=True):
            await stop_process_group(process, grace)
            await process.aclose()
    return process.returncode or 0, tail.text()

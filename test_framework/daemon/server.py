"""The resident process: `python -m test_framework.daemon.server SOCKET ROOT IDLE_SECONDS`,
started by the thin client (client.py), one per project and interpreter.

It is the engine, kept running: each run the client sends is the command line's plain run
(`cli.serve_run`), in this process's loop, with the client's working folder and environment,
its output streamed back, and its shards forked from a zygote the `WarmPool` keeps between runs
(execution/resident.py) while nothing it imported or read changed. Runs are served one after
another, never mixed. Between runs it watches the project: when a file changes it drops the
stale zygote and starts its replacement at once, so the next run finds it warm.

It leaves by itself when nobody used it for IDLE_SECONDS, when its own code or the installed
packages changed (it says "stale" to the client, which starts a new one), on `daemon stop`,
on SIGTERM, or when its zygote grows past `MAX_ZYGOTE_RSS_MB`. Only its own user may talk to
it: the socket is created mode 0600 in a folder of the user's, and each connection's peer
credentials are checked.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import math
import os
import shutil
import signal
import socket
import struct
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TextIO

import anyio
import psutil
from anyio.abc import SocketAttribute, SocketStream
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ..cli import serve_run
from ..command_request import parse_request
from ..execution.executor import ExecutorStart, LocalExecutor
from ..execution.resident import WarmPool, environment_state, warm_pool
from ..exit_codes import ExitCode
from ..foreground import foreground_option
from ..request import resolve
from .wire import encode

# A zygote past this resident size is replaced after the run (a leak in the suite's imports
# would otherwise grow with every collection it kept).
MAX_ZYGOTE_RSS_MB = 4096
# How often an idle resident process looks for changed files.
WATCH_SECONDS = 0.5
_PACKAGE = Path(__file__).resolve().parent.parent


def own_code_state() -> str:
    """The engine's own files: a resident process whose code changed must not serve."""
    digest = hashlib.sha256()
    for path in sorted(_PACKAGE.rglob("*.py")):
        with contextlib.suppress(OSError):
            stat = path.stat()
            digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\0".encode())
    return digest.hexdigest()


class ClientStream:
    """A text stream whose writes go to the client, in order, without blocking the loop."""

    def __init__(self, send: MemoryObjectSendStream[bytes], kind: str, tty: bool) -> None:
        self._send = send
        self._kind = kind
        self._tty = tty

    def write(self, text: str) -> int:
        if text:
            with contextlib.suppress(anyio.ClosedResourceError, anyio.BrokenResourceError):
                self._send.send_nowait(encode({self._kind: text}))
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return self._tty

    def fileno(self) -> int:
        raise OSError("a resident run's output has no descriptor")


@dataclass
class Resident:
    socket_path: Path
    root: Path
    idle_seconds: float
    pool: WarmPool
    scope: anyio.CancelScope
    lock: anyio.Lock = field(default_factory=anyio.Lock)
    last_used: float = field(default_factory=time.monotonic)
    started: float = field(default_factory=time.time)
    runs: int = 0
    running: bool = False
    code: str = field(default_factory=own_code_state)
    environment: str = ""
    last_start: ExecutorStart | None = None
    run_scope: anyio.CancelScope | None = None

    def __post_init__(self) -> None:
        self.environment = environment_state(self.root)

    def stale(self) -> str | None:
        if own_code_state() != self.code:
            return "the engine's code changed"
        if environment_state(self.root) != self.environment:
            return "the installed packages changed"
        return None

    # ---- a connection --------------------------------------------------------------------------
    async def handle(self, stream: SocketStream) -> None:
        async with stream:
            if not _same_user(stream):
                return
            reader = _Lines(stream)
            request = await reader.next()
            if request is None:
                return
            op = request.get("op")
            if op == "status":
                await stream.send(encode({"status": self.status()}))
            elif op == "stop":
                await stream.send(encode({"stopped": os.getpid()}))
                self.scope.cancel()
            elif op == "run":
                # At once, before waiting for another run: a client that hears nothing takes
                # this process for hung and replaces it.
                await stream.send(encode({"accepted": os.getpid()}))
                async with self.lock:
                    self.last_used = time.monotonic()
                    try:
                        await self.serve(stream, reader, request)
                    finally:
                        self.last_used = time.monotonic()

    async def serve(self, stream: SocketStream, reader: _Lines, request: dict[str, Any]) -> None:
        why = self.stale()
        if why is not None:
            await stream.send(encode({"stale": why}))
            self.scope.cancel()
            return
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        argv = list(request["argv"])
        if self._not_served_here(argv, str(request["prog"])):
            await stream.send(encode({"local": "this run needs the engine in the foreground"}))
            return
        send, receive = anyio.create_memory_object_stream[bytes](math.inf)
        tty = bool(request.get("tty"))
        out = ClientStream(send, "o", tty)
        err = ClientStream(send, "e", tty)
        relayed = anyio.Event()
        async with anyio.create_task_group() as tg:
            tg.start_soon(_relay, receive, stream, relayed)
            tg.start_soon(_forward_interrupts, reader, self)
            self.running = True
            code = int(ExitCode.INTERRUPTED)
            try:
                with anyio.CancelScope() as self.run_scope:
                    started = request.get("started")
                    code = await serve_run(
                        argv,
                        str(request["prog"]),
                        self.executor,
                        _t(out),
                        _t(err),
                        started if isinstance(started, (int, float)) else None,
                    )
                if self.run_scope.cancelled_caught:
                    err.write(f"{request['prog']}: interrupted\n")
            finally:
                self.running = False
                self.run_scope = None
                self.runs += 1
                send.close()
                # The run's signal receiver is gone: an interrupt with no run is ignored.
                signal.signal(signal.SIGINT, signal.SIG_IGN)
            await relayed.wait()  # every line the run wrote, before its exit code
            tg.cancel_scope.cancel()  # the interrupt reader: the client may stay silent
        await stream.send(encode({"exit": code}))
        self._after_run()

    def interrupt(self) -> None:
        """Ctrl-C at the client: while the dispatcher listens for SIGINT, it gets one (it
        stops the run and reports what finished); before that, the run is cancelled."""
        if not self.running:
            return
        handler = signal.getsignal(signal.SIGINT)
        if handler not in (signal.SIG_IGN, signal.SIG_DFL, signal.default_int_handler, None):
            os.kill(os.getpid(), signal.SIGINT)
        elif self.run_scope is not None:
            self.run_scope.cancel()

    def _not_served_here(self, argv: list[str], prog: str) -> bool:
        """Runs that need a terminal of their own, or a loop of their own, or that are another
        project's, go back to the client (which then runs the engine in-process)."""
        try:
            request, _ = parse_request(argv, prog)
            settings = resolve(request)
        except Exception:
            return False
        if not settings.resident or settings.watch:
            return True
        if Path(settings.project_root).resolve() != Path(self.root).resolve():
            return True  # another project's run: this process watches only its own files
        return foreground_option(settings.pytest_args) is not None and not settings.list_only

    @contextlib.asynccontextmanager
    async def executor(self, start: ExecutorStart) -> AsyncIterator[LocalExecutor]:
        self.last_start = start
        async with self.pool.executor(start) as executor:
            yield executor

    def _after_run(self) -> None:
        """A zygote that grew too big, or went stale during the run, goes now; its
        replacement starts at once."""
        held = self.pool.held
        if held is not None and _rss_mb(held.zygote.pid) > MAX_ZYGOTE_RSS_MB:
            self.pool.replaced.append(f"it grew past {MAX_ZYGOTE_RSS_MB} MB")
            self.pool.release()

    # ---- between runs ----------------------------------------------------------------------------
    async def watch(self) -> None:
        """Idle: drop a stale zygote and start its replacement; leave when unused too long."""
        while True:
            await anyio.sleep(WATCH_SECONDS)
            if self.lock.locked():
                continue
            if time.monotonic() - self.last_used > self.idle_seconds:
                self.scope.cancel()
                return
            if self.stale() is not None:
                self.scope.cancel()  # the next client starts a process with the new code
                return
            async with self.lock:
                await self._warm_again()

    async def _warm_again(self) -> None:
        had = self.pool.held is not None
        if self.pool.refresh() is None and had:
            return
        start = self.last_start
        if start is None or start.warm_argv is None:
            return
        # The replacement collects now, in the background: the next run finds it warm.
        with contextlib.suppress(Exception):
            await self.pool.acquire(replace(start, scratch=self.pool.scratch))

    def status(self) -> dict[str, Any]:
        zygote = self.pool.status()
        return {
            "pid": os.getpid(),
            "root": str(self.root),
            "socket": str(self.socket_path),
            "uptime_seconds": round(time.time() - self.started, 1),
            "idle_seconds": round(time.monotonic() - self.last_used, 1),
            "idle_limit_seconds": self.idle_seconds,
            "runs": self.runs,
            "running": self.running,
            "rss_mb": round(_rss_mb(os.getpid()), 1),
            "zygote_rss_mb": round(_rss_mb(zygote.get("zygote")), 1),
            **{f"zygote_{k}" if k != "zygote" else "zygote_pid": v for k, v in zygote.items()},
            "replaced_because": self.pool.replaced[-5:],
            "base_pid": self.pool.base_pid,
            "base_rss_mb": round(_rss_mb(self.pool.base_pid), 1),
            "base_replaced_because": self.pool.bases_replaced[-5:],
        }


def _t(stream: ClientStream) -> TextIO:
    return stream  # type: ignore[return-value]  # the reporters write, flush and ask isatty


def _rss_mb(pid: object) -> float:
    if not isinstance(pid, int):
        return 0.0
    try:
        return float(psutil.Process(pid).memory_info().rss) / 2**20
    except psutil.Error:
        return 0.0


def _same_user(stream: SocketStream) -> bool:
    raw = stream.extra(SocketAttribute.raw_socket)
    try:
        creds = raw.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except (OSError, AttributeError):
        return False
    _, uid, _ = struct.unpack("3i", creds)
    return bool(uid == os.getuid())


class _Lines:
    def __init__(self, stream: SocketStream) -> None:
        self.stream = stream
        self.buffer = b""

    async def next(self) -> dict[str, Any] | None:
        while b"\n" not in self.buffer:
            try:
                chunk = await self.stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
                return None
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        message: dict[str, Any] = json.loads(line)
        return message


async def _relay(
    receive: MemoryObjectReceiveStream[bytes], stream: SocketStream, done: anyio.Event
) -> None:
    try:
        async with receive:
            async for frame in receive:
                with contextlib.suppress(anyio.BrokenResourceError, OSError):
                    await stream.send(frame)
    finally:
        done.set()


async def _forward_interrupts(reader: _Lines, resident: Resident) -> None:
    """Ctrl-C at the client (or the client gone) interrupts the run as SIGINT would."""
    while True:
        message = await reader.next()
        if message is None or message.get("op") == "interrupt":
            resident.interrupt()
            if message is None:
                return


async def main_async(socket_path: Path, root: Path, idle_seconds: float) -> None:
    old = os.umask(0o177)  # the socket is born closed to others
    try:
        listener = await anyio.create_unix_listener(socket_path)
    finally:
        os.umask(old)
    os.chmod(socket_path, 0o600)
    scratch = Path(tempfile.mkdtemp(prefix="test_framework-resident-"))
    try:
        async with listener, warm_pool(scratch / "zygote") as pool:
            with anyio.CancelScope() as scope:
                resident = Resident(socket_path, root, idle_seconds, pool, scope)
                async with anyio.create_task_group() as tg:
                    tg.start_soon(resident.watch)
                    tg.start_soon(_leave_on_term, scope)
                    await listener.serve(resident.handle, task_group=tg)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


async def _leave_on_term(scope: anyio.CancelScope) -> None:
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGHUP) as signals:
        async for _ in signals:
            scope.cancel()
            return


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    socket_path, root, idle = Path(args[0]), Path(args[1]), float(args[2])
    socket_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(f"{socket_path}.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return 0  # another resident process serves this socket
        with contextlib.suppress(FileNotFoundError):
            socket_path.unlink()  # a dead one's
        # A run's interrupt arrives as SIGINT from this process itself; with no run, ignore it.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            anyio.run(main_async, socket_path, root, idle, backend="asyncio")
        finally:
            with contextlib.suppress(OSError):
                socket_path.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())

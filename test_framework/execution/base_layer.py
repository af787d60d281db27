"""The engine's side of the base layer (see worker/base_layer.py for the process's side): a
Python with pytest imported, kept by a resident process, from which each project layer (a
zygote) is forked instead of spawned.

`BaseLayer.start` is a `Starter`, like `spawn_worker`: the zygote does not know which one
started it. The forked layer is its own session, writes to an output file in the scratch
folder, and is stopped like any worker (TERM its group, grace, KILL); its exit status comes
from the base, which reaps it. If the base dies, its layers are killed with it (nobody would
report their exits) and the pool starts both afresh.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import socket
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path

import anyio
from anyio.abc import SocketStream, TaskStatus

from ..worker.protocol import (
    ENV_BASE,
    ENV_CHANNEL,
    PROTOCOL_ENV_PREFIX,
    Layer,
    Ready,
    encode,
)
from .channel import read_messages
from .forked import ForkedChild, ForkedChildren, ForkedProcess
from .process import CannotStart, spawn_worker, stop_forked

BASE_ARGV = ("-m", "test_framework.worker.base_layer")
PYTEST_ARGV = ("-m", "pytest")


class BaseUnavailable(CannotStart):
    """The base layer is gone or cannot start this command: spawn instead."""


class BaseLayer:
    """One base process, started in a task group with `run`; `start` forks layers from it."""

    def __init__(self, *, cwd: str, env: Mapping[str, str], scratch: Path, grace: float) -> None:
        self.cwd = cwd
        self.env = dict(env)
        self.scratch = scratch
        self.grace = grace
        self.alive = False
        self.ended = anyio.Event()
        self.pid: int | None = None
        self.modules: tuple[str, ...] = ()  # the module files it imported (Ready)
        self._control: socket.socket | None = None
        self._requests = itertools.count(1)
        self._children = ForkedChildren()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Start the base and follow its channel until it exits. Started (in `task_status`'s
        sense) once it is ready to fork; one that dies first raises BaseUnavailable."""
        engine_end, base_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        started = False
        try:
            async with spawn_worker(
                BASE_ARGV,
                cwd=self.cwd,
                env=self.env,
                grace=self.grace,
                passed_fds={ENV_BASE: base_end.fileno()},
            ) as worker:
                base_end.close()
                self._control = engine_end
                self.pid = worker.pid
                try:
                    async for message in read_messages(worker.channel):
                        if isinstance(message, Ready):
                            self.modules = message.modules
                            self.alive = started = True
                            task_status.started()
                        else:
                            self._children.dispatch(message)
                    with anyio.move_on_after(self.grace):
                        await worker.wait()
                finally:
                    self.alive = False
                    self.ended.set()
                    self._children.orphan_everyone()
                if not started:
                    raise BaseUnavailable(
                        f"the base layer exited at its start: {worker.output_text()[-2000:]}"
                    )
        finally:
            base_end.close()
            engine_end.close()

    def close(self) -> None:
        """No more layers: the base leaves its loop and exits (its layers live on)."""
        if self._control is not None:
            with contextlib.suppress(OSError):
                self._control.shutdown(socket.SHUT_RDWR)

    @contextlib.asynccontextmanager
    async def start(
        self,
        argv: Sequence[str],
        *,
        cwd: str,
        env: Mapping[str, str],
        protocol_env: Mapping[str, str] | None = None,
        grace: float = 2.0,
        passed_fds: Mapping[str, int] | None = None,
    ) -> AsyncIterator[ForkedProcess]:
        """`python -m pytest ...` forked from the base (a `Starter`). Only that command, in the
        base's folder and environment, can be forked: anything else raises BaseUnavailable."""
        if tuple(argv[:2]) != PYTEST_ARGV or cwd != self.cwd:
            raise BaseUnavailable("the base layer forks only `-m pytest` in its own folder")
        if not self.alive or self._control is None:
            raise BaseUnavailable("the base layer is not running")
        request = next(self._requests)
        layer = self._children.expect(request)
        parent, child_end = socket.socketpair()
        output_path = self.scratch / f"layer-{request}.out"
        output = os.open(output_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        child_env = {k: v for k, v in env.items() if not k.startswith(PROTOCOL_ENV_PREFIX)}
        child_env.update(protocol_env or {})
        passed = {ENV_CHANNEL: child_end.fileno(), **(passed_fds or {})}
        command = Layer(request, tuple(argv[2:]), cwd, child_env, tuple(passed))
        try:
            socket.send_fds(self._control, [encode(command)], [output, *passed.values()])
        except OSError as exc:
            parent.close()
            self._children.forget(request)
            raise BaseUnavailable(f"cannot reach the base layer: {exc}") from None
        finally:
            os.close(output)
            child_end.close()
        try:
            await layer.forked.wait()
            if layer.pid is None:
                raise BaseUnavailable("the base layer exited before it forked")
            parent.setblocking(False)
            channel = await SocketStream.from_socket(parent)
        except BaseException:
            parent.close()
            self._children.forget(request)
            raise
        try:
            yield ForkedProcess(layer, channel, output_path, full_collection=True)
        finally:
            with anyio.CancelScope(shield=True):
                await self._stop(layer, grace)
                await channel.aclose()
                self._children.forget(request)

    async def _stop(self, layer: ForkedChild, grace: float) -> None:
        assert layer.pid is not None
        await stop_forked(layer.pid, layer.exited, grace)

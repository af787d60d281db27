"""The warm process started before the engine imports itself (issue 19: start-up once,
overlapped).

A run's first test waits for two starts in a row: the engine's (interpreter, its own imports,
the configuration: ~0.4 s here) and then its zygote's (interpreter, pytest, plugins,
conftests: ~0.5 s). Only the configuration is needed to know the zygote's command line, so
`python -m test_framework` reads it, starts the zygote, and only then imports the engine; the
two starts overlap. What the configuration cannot say yet is the zygote's kind (fork before
collecting, when the store holds the collection, or collect first): the zygote asks for it
(`Mode`) when pytest is about to collect, and the engine answers once its store is read.

The engine adopts the process only when the run wants exactly that one (same command line,
folder, environment and protocol variables); anything else, and every exit path that did not
adopt it, stops it (TERM its group, grace, KILL, reap). Standard library only until adopted:
importing this module must not cost what it saves.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..discovery import pytest_argv, queries_for
from ..request import RunSettings
from ..worker.protocol import (
    ENV_CHANNEL,
    ENV_RECORD_DEPS,
    ENV_REPORTS,
    ENV_ZYGOTE,
    ENV_ZYGOTE_ASK,
    PROTOCOL_ENV_PREFIX,
    Mode,
    encode,
    reports_folder,
)
from .importable import worker_env
from .output import file_tail

if TYPE_CHECKING:
    from anyio.abc import ByteReceiveStream


@dataclass
class Prestarted:
    """A zygote started early, and the scratch folder the run will use (its paths are in the
    zygote's environment)."""

    argv: tuple[str, ...]
    cwd: str
    env: dict[str, str]  # as the run computes it (worker_env), before protocol variables
    protocol_env: dict[str, str]  # the run's own protocol variables (the skip cache's)
    scratch: Path
    process: subprocess.Popen[bytes]
    channel: socket.socket  # the engine's end of the protocol channel
    control: socket.socket  # the engine's end of the zygote's command socket
    output: Path
    spawned_at: float
    adopted: bool = False
    closed: bool = field(default=False, repr=False)

    def matches(
        self,
        argv: tuple[str, ...] | None,
        cwd: str,
        env: Mapping[str, str],
        protocol_env: Mapping[str, str],
    ) -> bool:
        return (
            not self.closed
            and self.process.poll() is None
            and argv == self.argv
            and cwd == self.cwd
            and dict(env) == self.env
            and dict(protocol_env) == self.protocol_env
        )

    def tell_mode(self, early: bool, preload: Path | None) -> None:
        """The answer the zygote waits for before collecting."""
        with contextlib.suppress(OSError):  # it died: its channel says so
            self.control.send(encode(Mode(early, str(preload) if preload else "")))

    @contextlib.asynccontextmanager
    async def adopt(self, grace: float) -> AsyncIterator[AdoptedProcess]:
        """The process as a worker handle, for the zygote that follows it; stopped like a
        spawned worker when the block ends."""
        from anyio.abc import SocketStream

        self.adopted = True
        self.channel.setblocking(False)
        channel = await SocketStream.from_socket(self.channel)
        worker = AdoptedProcess(self.process, channel, self.output)
        try:
            yield worker
        finally:
            import anyio

            with anyio.CancelScope(shield=True):
                await worker.stop(grace)
                await channel.aclose()
                self.control.close()

    def stop(self) -> None:
        """Not wanted: the process is stopped (its scratch folder stays, the run's)."""
        if self.closed:
            return
        self.closed = True
        if not self.adopted:
            _stop_now(self.process, grace=2.0)
            self.channel.close()
            self.control.close()

    def close(self) -> None:
        """Whatever the run did: a process nobody adopted is stopped; the scratch folder goes."""
        self.stop()
        shutil.rmtree(self.scratch, ignore_errors=True)


class AdoptedProcess:
    """A `WorkerHandle` over a `subprocess.Popen` started before the event loop existed."""

    full_collection = True

    def __init__(
        self, process: subprocess.Popen[bytes], channel: ByteReceiveStream, output: Path
    ) -> None:
        self._process = process
        self._channel = channel
        self._output = output

    @property
    def pid(self) -> int:
        return self._process.pid

    @property
    def channel(self) -> ByteReceiveStream:
        return self._channel

    @property
    def returncode(self) -> int | None:
        return self._process.poll()

    async def wait(self) -> None:
        import anyio.to_thread

        if self._process.poll() is None:
            await anyio.to_thread.run_sync(self._process.wait, abandon_on_cancel=True)

    def output_text(self) -> str:
        return file_tail(self._output)

    async def stop(self, grace: float) -> None:
        """TERM the group, wait `grace`, KILL the group, reap."""
        import anyio

        if self._process.poll() is None:
            _signal_group(self._process.pid, signal.SIGTERM)
            with anyio.move_on_after(grace):
                await self.wait()
        _signal_group(self._process.pid, signal.SIGKILL)
        with anyio.move_on_after(grace):
            await self.wait()


def prestart(settings: RunSettings, environ: Mapping[str, str]) -> Prestarted | None:
    """Start the run's zygote now, if the run will want one (fork isolation, one collection
    query), in a scratch folder the run then uses; None otherwise."""
    if settings.isolation != "fork" or settings.list_only:
        return None
    queries = queries_for(settings.categories, settings.project_root)
    if len(queries) != 1:
        return None
    argv = pytest_argv(queries[0], settings.pytest_args)
    cwd = str(settings.project_root)
    scratch = Path(tempfile.mkdtemp(prefix="test_framework-"))
    env = worker_env(environ, cwd, scratch)
    recording = settings.profile.skip_cache or settings.changed is not None
    protocol_env = {ENV_RECORD_DEPS: "1"} if recording else {}
    engine_channel, child_channel = socket.socketpair()
    engine_control, child_control = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    output = scratch / "zygote.out"
    child_env = {k: v for k, v in env.items() if not k.startswith(PROTOCOL_ENV_PREFIX)}
    child_env.update(
        {
            ENV_REPORTS: str(reports_folder(scratch)),
            **protocol_env,
            ENV_ZYGOTE_ASK: "1",
            ENV_CHANNEL: str(child_channel.fileno()),
            ENV_ZYGOTE: str(child_control.fileno()),
        }
    )
    try:
        with output.open("wb") as sink:
            process = subprocess.Popen(
                [sys.executable, *argv],
                cwd=cwd,
                env=child_env,
                stdin=None,
                stdout=sink,
                stderr=subprocess.STDOUT,
                pass_fds=(child_channel.fileno(), child_control.fileno()),
                start_new_session=True,
            )
    except OSError:
        for end in (engine_channel, engine_control):
            end.close()
        shutil.rmtree(scratch, ignore_errors=True)
        return None
    finally:
        child_channel.close()
        child_control.close()
    return Prestarted(
        argv=argv,
        cwd=cwd,
        env=env,
        protocol_env=protocol_env,
        scratch=scratch,
        process=process,
        channel=engine_channel,
        control=engine_control,
        output=output,
        spawned_at=time.time(),
    )


def _signal_group(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signum)


def _stop_now(process: subprocess.Popen[bytes], grace: float) -> None:
    if process.poll() is None:
        _signal_group(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(grace)
    _signal_group(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(grace)

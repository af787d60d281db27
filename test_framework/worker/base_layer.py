"""The base layer of a resident process: an interpreter with pytest imported, forked into a
project layer (a zygote) whenever the project needs a new one.

An edit to a project file makes the resident zygote stale: its replacement has to import the
project and collect again, but nothing before that changed. This process pays the part that
does not depend on the project once (starting the interpreter, importing pytest and the
standard library it uses) and forks a fresh `python -m pytest ...` from that state per project
layer, so a replacement starts at pytest's configuration instead of at `exec`.

What it must not import: anything pytest marks for assertion rewriting at configuration
(`pytest11` plugins, `-p` modules such as the worker plugin, conftests' `pytest_plugins`):
imported early, pytest warns "already imported, cannot be rewritten", a failure under
`filterwarnings = error`. Nor the project or third-party packages: a conftest may set the
environment they read at import (`OMP_NUM_THREADS`, a backend). So: pytest, and only what
`import pytest` imports.

Started by the engine with `TEST_FRAMEWORK_BASE_FD` (a SOCK_SEQPACKET command socket) and the
protocol channel. It says `Hello` and then `Ready` (the module files it holds, for staleness)
on the channel, then serves `Layer` commands, one datagram each, carrying the new process's
output file, protocol channel and other descriptors (SCM_RIGHTS). It reaps its children and
reports `Forked` and `Exited`. Standard library and pytest only.
"""

from __future__ import annotations

import contextlib
import gc
import os
import runpy
import select
import signal
import socket
import sys
from collections.abc import Callable

import pytest  # noqa: F401  (the point of this process: imported once, before every fork)

from .fork_server import poke, reap_children
from .protocol import (
    ENV_BASE,
    ENV_CHANNEL,
    Forked,
    Hello,
    Layer,
    Message,
    Ready,
    decode_line,
    encode,
)

MAX_COMMAND = 1 << 20  # a command carries the whole environment


def main() -> None:
    channel = int(os.environ.pop(ENV_CHANNEL))
    control = socket.socket(fileno=int(os.environ.pop(ENV_BASE)))
    os.set_inheritable(channel, False)
    control.set_inheritable(False)

    def send(message: Message) -> None:
        with contextlib.suppress(OSError):  # the engine is gone: the loop ends on its own
            os.write(channel, encode(message))

    send(Hello(os.getpid(), rootdir=os.getcwd()))
    send(Ready(module_files()))
    gc.collect()
    gc.freeze()  # shared with every layer: the cyclic GC never copies it page by page
    layer = serve(control, send)
    if layer is None:
        return
    command, fds = layer
    os.close(channel)
    become_layer(command, fds)
    # From here on this process is `python -m pytest <args>`: pytest's own exit status ends it,
    # through the interpreter's normal shutdown (atexit handlers run, as in a fresh process).
    runpy.run_module("pytest", run_name="__main__", alter_sys=True)


def module_files() -> tuple[str, ...]:
    """The files of the modules this process imported: when one changes, the base is stale."""
    files = {getattr(m, "__file__", None) for m in list(sys.modules.values())}
    return tuple(sorted(f for f in files if isinstance(f, str) and os.path.isabs(f)))


def serve(
    control: socket.socket, send: Callable[[Message], None]
) -> tuple[Layer, list[int]] | None:
    """Fork a layer per command; returns in the child (its command and descriptors), or None
    once the engine closed its end."""
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_write, False)
    previous = signal.signal(signal.SIGCHLD, lambda signum, frame: poke(wake_write))
    try:
        while True:
            ready, _, _ = select.select([control.fileno(), wake_read], [], [], 1.0)
            if wake_read in ready:
                os.read(wake_read, 4096)
            reap_children(send)
            if control.fileno() not in ready:
                continue
            try:
                data, fds, _flags, _addr = socket.recv_fds(control, MAX_COMMAND, 16)
            except OSError:
                return None
            if not data:
                return None
            command = decode_line(data)
            if not isinstance(command, Layer) or len(fds) != len(command.fd_names) + 1:
                for fd in fds:
                    os.close(fd)
                continue
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                control.close()
                return command, fds
            for fd in fds:
                os.close(fd)
            send(Forked(command.request, pid))
    finally:
        signal.signal(signal.SIGCHLD, previous)
        os.close(wake_read)
        os.close(wake_write)


def become_layer(command: Layer, fds: list[int]) -> None:
    """A fresh process group writing to its own output file, with the environment, folder and
    arguments `python -m pytest` would have been started with."""
    os.setsid()
    output, *passed = fds
    os.dup2(output, 1)
    os.dup2(output, 2)
    os.close(output)
    os.chdir(command.cwd)
    os.environ.clear()
    os.environ.update(command.env)
    for name, fd in zip(command.fd_names, passed, strict=True):
        os.set_inheritable(fd, True)  # as `pass_fds` leaves a spawned process's
        os.environ[name] = str(fd)
    sys.argv = ["pytest", *command.args]
    for name in [
        n for n in sys.modules if n == "test_framework" or n.startswith("test_framework.")
    ]:
        del sys.modules[name]  # pytest would warn "already imported, cannot be rewritten"


if __name__ == "__main__":
    main()

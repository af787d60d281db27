"""The fork server inside the zygote: collect once, then fork one child per shard.

Runs inside a pytest process started with `TEST_FRAMEWORK_ZYGOTE_FD` (a SOCK_SEQPACKET socket
from the engine). Standard library and pytest only, like the worker plugin that calls it. After
collection the zygote stops pytest's global capture (so no child inherits a capture file it
would share with its siblings) and waits for commands; it starts no thread and no event loop,
so `fork()` copies a quiet, single-threaded process.

Each command is one datagram, a `protocol.Fork` message, carrying the child's end of its
protocol socket as an SCM_RIGHTS descriptor. The child becomes a session
leader, points fds 1 and 2 (and pytest's faulthandler) at its own output file, starts a fresh
capture, narrows `session.items` to its selection and returns into pytest's own run loop, so the
rest of its life is an ordinary pytest session. The zygote reaps its children and reports
`Forked` and `Exited` on its protocol channel.

One loop serves one engine connection: when the engine closes its end, `serve` returns and the
zygote ends its session. A zygote that outlives a run (a resident process) serves the next
connection with another call.
"""

from __future__ import annotations

import contextlib
import gc
import inspect
import os
import select
import signal
import socket
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from .protocol import Exited, Fork, Forked, Message, decode_line

MAX_COMMAND = 1 << 16


@dataclass(frozen=True, slots=True)
class ChildSetup:
    """What a forked child needs to become a shard's worker."""

    command: Fork
    channel_fd: int


def serve(
    session: pytest.Session,
    control: socket.socket,
    send: Callable[[Message], None],
    reap_interval: float = 1.0,
) -> ChildSetup | None:
    """The zygote's loop. Returns in a forked child (with its setup) or when the engine is gone."""
    capture = session.config.pluginmanager.getplugin("capturemanager")
    if capture is not None:
        capture.stop_global_capturing()
    _index_module_files()
    # Everything alive now is shared with every child. Frozen, the cyclic GC never walks it in
    # a child, so the child does not copy the zygote's whole heap page by page (copy-on-write).
    gc.collect()
    gc.freeze()
    # A child's exit wakes the loop at once (its shard ends when the engine hears of it); the
    # interval is only a safety net.
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_write, False)
    previous = signal.signal(signal.SIGCHLD, lambda signum, frame: poke(wake_write))
    try:
        return _loop(control, send, reap_interval, wake_read)
    finally:
        signal.signal(signal.SIGCHLD, previous)
        os.close(wake_read)
        os.close(wake_write)


def _index_module_files() -> None:
    """Fill `inspect`'s file -> module index now, once: pytest formats every failure's traceback
    through `inspect.findsource`, whose first lookup in a process resolves the real path of
    every loaded module (~15 ms on attrs). Done here, every child inherits the index and its
    first failure is reported at once."""
    with contextlib.suppress(Exception):
        # A name no module has: the lookup walks sys.modules (the modules not indexed yet).
        inspect.getmodule(_index_module_files.__code__, "<test_framework: index modules>")


def poke(fd: int) -> None:
    """Wake a select loop through its pipe (from a signal handler)."""
    with contextlib.suppress(OSError):  # the pipe is full: a wake-up is already pending
        os.write(fd, b"x")


def _loop(
    control: socket.socket, send: Callable[[Message], None], reap_interval: float, wake: int
) -> ChildSetup | None:
    while True:
        ready, _, _ = select.select([control.fileno(), wake], [], [], reap_interval)
        if wake in ready:
            os.read(wake, 4096)
        reap_children(send)
        if control.fileno() not in ready:
            continue
        try:
            data, fds, _flags, _addr = socket.recv_fds(control, MAX_COMMAND, 4)
        except OSError:
            return None
        if not data:
            return None  # the engine closed its end: the run is over
        command = decode_line(data)
        if not isinstance(command, Fork) or not fds:
            for fd in fds:
                os.close(fd)
            continue
        pid = os.fork()
        if pid == 0:
            for extra in fds[1:]:
                os.close(extra)
            control.close()
            return ChildSetup(command, fds[0])  # serve() restores SIGCHLD and closes the pipe
        for fd in fds:
            os.close(fd)
        send(Forked(command.shard, pid))


def reap_children(send: Callable[[Message], None]) -> None:
    """Reap every child that ended, each reported as `Exited`."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        send(Exited(pid, os.waitstatus_to_exitcode(status)))


def become_child(session: pytest.Session, setup: ChildSetup) -> None:
    """Turn a freshly forked zygote into one shard's worker, before pytest's run loop."""
    os.setsid()
    output = os.open(setup.command.output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(output, 1)
    os.dup2(output, 2)
    _redirect_pytest_faulthandler(session.config, output)
    os.close(output)
    capture = session.config.pluginmanager.getplugin("capturemanager")
    if capture is not None:
        capture.start_global_capturing()
    silence_terminal(session.config)
    # Collection errors were the zygote's to report; this child only runs its tests.
    session.testsfailed = 0


def silence_terminal(config: pytest.Config) -> None:
    """Nobody reads a forked child's terminal, nor the zygote's: their closing summaries (and the
    lazy imports plugins make there, ~1 s for hypothesis without bytecode caches) would be paid
    once per shard and once more at the end of every run. The reporter's hooks go; the object
    stays findable, since pytest itself (assertion rewriting's highlighter) and plugins look it
    up by name."""
    manager = config.pluginmanager
    terminal = manager.getplugin("terminalreporter")
    if terminal is not None and not isinstance(terminal, _WithoutHooks):
        manager.unregister(terminal)
        manager.register(_WithoutHooks(terminal), "terminalreporter")


class _WithoutHooks:
    """Forwards attribute access to a plugin object but shows pluggy no `pytest_*` methods
    (pluggy finds hooks through dir(), which lists only this class's own names)."""

    def __init__(self, plugin: object) -> None:
        self._plugin = plugin

    def __getattr__(self, name: str) -> object:
        return getattr(self._plugin, name)


def _redirect_pytest_faulthandler(config: pytest.Config, output: int) -> None:
    with contextlib.suppress(Exception):
        from _pytest.faulthandler import fault_handler_stderr_fd_key

        if fault_handler_stderr_fd_key in config.stash:
            os.dup2(output, config.stash[fault_handler_stderr_fd_key])

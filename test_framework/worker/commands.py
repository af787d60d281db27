"""The engine's commands to a running worker: the receiving side of the child protocol.

The protocol socket is two-way. Before each test the worker reads what the engine wrote since
the last one, without waiting: `Skip` (the circuit breaker: files whose tests must not start;
each is reported withheld, never as a pytest skip) and `Release` (work stealing: give back the
tail of this worker's tests). Standard library only, like the rest of the child side.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence

from .protocol import Release, Skip, decode_lines

MAX_READ = 65536


class EngineCommands:
    """What the engine asked of this worker so far, read from the channel `fd`."""

    def __init__(self) -> None:
        self.control: socket.socket | None = None  # the channel's reading side
        self.pending = b""  # an incomplete line, completed by the next read
        self.skip_files: dict[str, str] = {}  # file -> why the breaker withholds its tests

    def reset(self) -> None:
        """A forked child has its own channel: close the zygote's reading side."""
        if self.control is not None:
            self.control.close()  # a duplicate: the channel itself stays open
        self.control = None
        self.pending = b""

    def read(self, fd: int) -> list[int]:
        """Commands written since the last read, without waiting: skips are remembered here;
        each release's pieces are returned, in order."""
        if self.control is None:
            try:
                self.control = socket.socket(fileno=os.dup(fd))
            except OSError:
                return []
        while True:
            try:
                chunk = self.control.recv(MAX_READ, socket.MSG_DONTWAIT)
            except OSError:  # nothing waiting (EAGAIN), or the engine is gone
                break
            if not chunk:
                break
            self.pending += chunk
        *lines, self.pending = self.pending.split(b"\n")
        releases = []
        for command in decode_lines(lines):
            if isinstance(command, Skip):
                self.skip_files.update(dict.fromkeys(command.files, command.reason))
            elif isinstance(command, Release):
                releases.append(command.pieces)
        return releases


def tail_to_release(items: Sequence[object], position: int, pieces: int) -> int:
    """How many tests, from the end, to give back after the test at `position`:
    pieces/(pieces+1) of those after it (half, for one piece), never the one right after it
    (its `nextitem`, which fixture teardown was planned around)."""
    remaining = len(items) - position - 1 if position >= 0 else 0
    return min(max(0, remaining - 1), remaining * pieces // (pieces + 1))

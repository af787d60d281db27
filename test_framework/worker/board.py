"""The progress board: which test a worker is running, and since when, in a small shared file.

Crash attribution and timeouts need the running test at every moment, but a protocol message per
test start costs the engine a wakeup and a JSON parse per test, most of its work on a suite of
tiny tests. So the worker writes (state, index, start) into a memory-mapped file, a store to
memory with no system call, and the engine reads it when it needs to: on each watchdog tick and
when a worker died. A sequence number written before and after each update (a seqlock) lets the
reader notice an update it raced with and read again. Standard library only: the worker uses it.

`index` is the test's position in the worker's `collected` list; `started` is the worker's
`time.monotonic()`, a system-wide clock the engine's `time.monotonic()` shares.
"""

from __future__ import annotations

import mmap
import os
import struct
from dataclasses import dataclass
from pathlib import Path

SIZE = 64
_SEQ = struct.Struct("<q")
_BODY = struct.Struct("<qqd")  # state, index, started
IDLE, RUNNING, FINISHED = 0, 1, 2


@dataclass(frozen=True, slots=True)
class BoardState:
    state: int
    index: int
    started: float


def create(path: Path) -> None:
    path.write_bytes(bytes(SIZE))


class BoardWriter:
    def __init__(self, path: str) -> None:
        fd = os.open(path, os.O_RDWR)
        try:
            self._map = mmap.mmap(fd, SIZE)
        finally:
            os.close(fd)
        self._seq = 0

    def write(self, state: int, index: int, started: float) -> None:
        self._seq += 1  # odd: an update is under way
        _SEQ.pack_into(self._map, 0, self._seq)
        _BODY.pack_into(self._map, _SEQ.size, state, index, started)
        self._seq += 1
        _SEQ.pack_into(self._map, 0, self._seq)


class BoardReader:
    def __init__(self, path: Path) -> None:
        with path.open("rb") as handle:
            self._map = mmap.mmap(handle.fileno(), SIZE, access=mmap.ACCESS_READ)

    def read(self) -> BoardState | None:
        for _ in range(1000):
            (before,) = _SEQ.unpack_from(self._map, 0)
            if before % 2:
                continue
            body = _BODY.unpack_from(self._map, _SEQ.size)
            (after,) = _SEQ.unpack_from(self._map, 0)
            if before == after:
                return BoardState(*body) if before else None
        return None

    def close(self) -> None:
        self._map.close()

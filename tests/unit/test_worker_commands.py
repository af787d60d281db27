"""The worker's side of the engine's commands: read without waiting, a line split across
reads completed by the next, skips kept, releases returned in order, and the tail's size."""

from __future__ import annotations

import socket

from test_framework.worker.commands import EngineCommands, tail_to_release
from test_framework.worker.protocol import Release, Skip, encode


def test_commands_are_read_without_waiting_and_a_split_line_waits_for_its_end() -> None:
    engine, worker = socket.socketpair()
    commands = EngineCommands()
    try:
        assert commands.read(worker.fileno()) == []  # nothing written: no wait
        skip = encode(Skip(("tests/test_a.py",), "the breaker opened"))
        release = encode(Release(2))
        engine.sendall(skip + release[:5])
        assert commands.read(worker.fileno()) == []
        assert commands.skip_files == {"tests/test_a.py": "the breaker opened"}
        engine.sendall(release[5:] + encode(Release(1)))
        assert commands.read(worker.fileno()) == [2, 1]
    finally:
        commands.reset()
        engine.close()
        worker.close()


def test_a_release_keeps_the_next_test_and_gives_back_its_share_from_the_end() -> None:
    items = list(range(10))
    # At position 1: eight tests after it; one piece gives back half, never the next one.
    assert tail_to_release(items, 1, 1) == 4
    assert tail_to_release(items, 1, 3) == 6
    assert tail_to_release(items, 8, 1) == 0  # only the next test is left
    assert tail_to_release(items, -1, 1) == 0  # not one of this worker's tests

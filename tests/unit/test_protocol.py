"""The child protocol parser: JSON lines, a torn last line, a foreign protocol version."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest

from test_framework.execution.board import FINISHED, RUNNING, BoardReader, BoardWriter, create
from test_framework.execution.constants import PROTOCOL_VERSION
from test_framework.execution.protocol import parse_line, parse_lines, phase_report, read_messages


def line(event: str, **data: object) -> bytes:
    return (json.dumps({"event": event, **data}) + "\n").encode()


def test_parse_line_returns_event_and_payload() -> None:
    message = parse_line(line("started", nodeid="a.py::t").rstrip())
    assert message is not None
    assert (message.event, message.data) == ("started", {"nodeid": "a.py::t"})


@pytest.mark.parametrize("raw", [b"not json", b"[1, 2]", b'{"no_event": 1}', b""])
def test_garbage_lines_are_ignored(raw: bytes) -> None:
    assert parse_line(raw) is None


def test_a_different_protocol_version_is_refused() -> None:
    with pytest.raises(ValueError, match="protocol version"):
        parse_line(line("hello", v=PROTOCOL_VERSION + 1, pid=1).rstrip())


def test_phase_report_keeps_category_and_sections() -> None:
    report = phase_report(
        "a.py::t",
        {
            "when": "call",
            "outcome": "failed",
            "category": "failed",
            "duration": 0.5,
            "longrepr": "E assert 0",
            "sections": [["Captured stdout call", "hi"]],
        },
        ["a.py", 3, "t"],
    )
    assert report.nodeid == "a.py::t"
    assert report.sections == (("Captured stdout call", "hi"),)
    assert report.location == ("a.py", 3, "t")
    assert report.category == "failed"


def test_a_passing_phase_may_leave_out_what_it_does_not_have() -> None:
    report = phase_report("a.py::t", {"when": "setup", "outcome": "passed", "duration": 0.1})
    assert (report.longrepr, report.sections, report.category) == ("", (), "")


@pytest.mark.anyio
async def test_read_messages_reassembles_split_chunks_and_drops_a_torn_tail() -> None:
    send, receive = anyio.create_memory_object_stream[bytes](1000)
    payload = line("started", nodeid="x") + line("done", exitstatus=0) + b'{"event": "rep'
    async with send:
        for index in range(0, len(payload), 7):  # arbitrary chunking, mid-line cuts included
            await send.send(payload[index : index + 7])
    async with receive:
        events = [m.event async for m in read_messages(_ByteStream(receive))]
    assert events == ["started", "done"]


def test_a_batch_parses_in_one_go_and_a_bad_line_costs_only_itself() -> None:
    good = [line("result", nodeid=f"t{n}", passed=0.1).rstrip() for n in range(3)]
    assert [m.data["nodeid"] for m in parse_lines(good)] == ["t0", "t1", "t2"]
    mixed = [good[0], b'{"event": "res', good[2]]
    assert [m.data["nodeid"] for m in parse_lines(mixed)] == ["t0", "t2"]


@pytest.mark.anyio
async def test_coalescing_waits_between_quick_chunks_but_never_after_the_last() -> None:
    send, receive = anyio.create_memory_object_stream[bytes](10)
    chunks = [
        line("result", nodeid="t0", passed=0.0),
        line("result", nodeid="t1", passed=0.0),  # right after the first: wait, then read
        line("result", nodeid="t2", passed=0.0) + line("done", exitstatus=0),
    ]
    async with send:
        for chunk in chunks:
            await send.send(chunk)
    waits: list[float] = []

    async def record_wait(seconds: float) -> None:
        waits.append(seconds)

    async with receive:
        events = [
            m.event
            async for m in read_messages(
                _ByteStream(receive), coalesce=0.05, clock=lambda: 0.0, sleep=record_wait
            )
        ]
    assert events == ["result", "result", "result", "done"]
    # One wait, after the second chunk; none after the first (nothing came before it) and none
    # after the one that ends with `done`.
    assert waits == [0.05]


def test_the_board_tells_which_test_runs_and_since_when(tmp_path: Path) -> None:
    path = tmp_path / "board"
    create(path)
    reader = BoardReader(path)
    try:
        assert reader.read() is None  # nothing written yet
        writer = BoardWriter(str(path))
        writer.write(RUNNING, 7, 123.5)
        state = reader.read()
        assert state is not None
        assert (state.state, state.index, state.started) == (RUNNING, 7, 123.5)
        writer.write(FINISHED, 7, 124.0)
        state = reader.read()
        assert state is not None
        assert (state.state, state.index) == (FINISHED, 7)
    finally:
        reader.close()


class _ByteStream:
    """Adapts a memory object stream of bytes to the ByteReceiveStream the reader expects."""

    def __init__(self, receive: anyio.streams.memory.MemoryObjectReceiveStream[bytes]) -> None:
        self._receive = receive

    async def receive(self, max_bytes: int = 65536) -> bytes:
        return await self._receive.receive()

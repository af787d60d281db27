"""The child protocol parser: JSON lines, a torn last line, a foreign protocol version."""

from __future__ import annotations

import json

import anyio
import pytest

from test_framework.execution.constants import PROTOCOL_VERSION
from test_framework.execution.protocol import parse_line, phase_report, read_messages


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
        {
            "nodeid": "a.py::t",
            "when": "call",
            "outcome": "failed",
            "category": "failed",
            "duration": 0.5,
            "longrepr": "E assert 0",
            "sections": [["Captured stdout call", "hi"]],
            "location": ["a.py", 3, "t"],
        }
    )
    assert report.sections == (("Captured stdout call", "hi"),)
    assert report.location == ("a.py", 3, "t")
    assert report.category == "failed"


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


class _ByteStream:
    """Adapts a memory object stream of bytes to the ByteReceiveStream the reader expects."""

    def __init__(self, receive: anyio.streams.memory.MemoryObjectReceiveStream[bytes]) -> None:
        self._receive = receive

    async def receive(self, max_bytes: int = 65536) -> bytes:
        return await self._receive.receive()

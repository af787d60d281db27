"""Parse the child protocol's JSON lines into typed messages, tolerating a torn last line."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import anyio
from anyio.abc import ByteReceiveStream

from ..models import PhaseReport
from .constants import PROTOCOL_VERSION

MAX_LINE = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Message:
    event: str
    data: dict[str, Any]


async def read_messages(stream: ByteReceiveStream) -> AsyncIterator[Message]:
    """Yield one Message per complete line; a partial line at EOF (a killed writer) is dropped."""
    buffer = bytearray()
    while True:
        try:
            chunk = await stream.receive(65536)
        except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
            return
        buffer.extend(chunk)
        while True:
            newline = buffer.find(b"\n")
            if newline < 0:
                break
            line = bytes(buffer[:newline])
            del buffer[: newline + 1]
            message = parse_line(line)
            if message is not None:
                yield message
        if len(buffer) > MAX_LINE:
            raise ValueError("child protocol line exceeds 64 MiB")


def parse_line(line: bytes) -> Message | None:
    try:
        data = json.loads(line)
    except ValueError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("event"), str):
        return None
    if data["event"] == "hello" and data.get("v") != PROTOCOL_VERSION:
        raise ValueError(f"child protocol version {data.get('v')!r}, expected {PROTOCOL_VERSION}")
    return Message(event=data.pop("event"), data=data)


def phase_report(data: dict[str, Any]) -> PhaseReport:
    location = data.get("location")
    return PhaseReport(
        nodeid=data["nodeid"],
        when=data["when"],
        outcome=data["outcome"],
        category=data.get("category") or "",
        duration=float(data.get("duration") or 0.0),
        longrepr=data.get("longrepr") or "",
        sections=tuple((str(a), str(b)) for a, b in data.get("sections") or ()),
        location=(location[0], location[1], location[2]) if location else None,
    )

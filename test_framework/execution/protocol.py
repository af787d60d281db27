"""Parse the child protocol's JSON lines into typed messages, tolerating a torn last line."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
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


async def read_messages(
    stream: ByteReceiveStream,
    coalesce: float = 0.0,
    final: str = "done",
    *,
    clock: Callable[[], float] = anyio.current_time,
    sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
) -> AsyncIterator[Message]:
    """Yield one Message per complete line; a partial line at EOF (a killed writer) is dropped.

    With `coalesce`, a chunk that follows the previous one within that many seconds (a worker
    finishing tests faster than that) makes the reader wait that long before reading again, so
    the next read takes many results at once: one wakeup of the engine per batch instead of per
    test. Slow tests, arriving one by one, are not delayed, and neither is anything after the
    `final` message (the end of a worker is never waited for).
    """
    buffer = bytearray()
    last_chunk = -1.0
    while True:
        try:
            chunk = await stream.receive(1 << 20)
        except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
            return
        buffer.extend(chunk)
        end = buffer.rfind(b"\n")
        messages: list[Message] = []
        if end >= 0:
            messages = parse_lines(bytes(buffer[:end]).split(b"\n"))
            del buffer[: end + 1]
        for message in messages:
            yield message
        if len(buffer) > MAX_LINE:
            raise ValueError("child protocol line exceeds 64 MiB")
        if coalesce:
            now = clock()
            if now - last_chunk < coalesce and not (messages and messages[-1].event == final):
                await sleep(coalesce)
                now = clock()
            last_chunk = now


def parse_lines(lines: list[bytes]) -> list[Message]:
    """Many lines in one JSON parse (a batch of results costs one call, not one per test); a
    batch with a bad line falls back to one parse per line, dropping the bad one."""
    if len(lines) > 1:
        try:
            decoded = json.loads(b"[" + b",".join(lines) + b"]")
        except ValueError:
            decoded = None
        if isinstance(decoded, list):
            return [m for m in map(_message, decoded) if m is not None]
    return [m for m in map(parse_line, lines) if m is not None]


def parse_line(line: bytes) -> Message | None:
    try:
        data = json.loads(line)
    except ValueError:
        return None
    return _message(data)


def _message(data: Any) -> Message | None:
    if not isinstance(data, dict) or not isinstance(data.get("event"), str):
        return None
    if data["event"] == "hello" and data.get("v") != PROTOCOL_VERSION:
        raise ValueError(f"child protocol version {data.get('v')!r}, expected {PROTOCOL_VERSION}")
    return Message(event=data.pop("event"), data=data)


def phase_report(nodeid: str, data: dict[str, Any], location: Any = None) -> PhaseReport:
    """One phase of a `result` message; fields a passing phase leaves out take their defaults."""
    sections = data.get("sections")
    return PhaseReport(
        nodeid,
        data["when"],
        data["outcome"],
        data.get("category") or "",
        float(data.get("duration") or 0.0),
        data.get("longrepr") or "",
        tuple((str(a), str(b)) for a, b in sections) if sections else (),
        location if location is None else (location[0], location[1], location[2]),
    )

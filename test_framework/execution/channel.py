"""The engine's end of a child's protocol channel: an async stream of typed messages.

Decoding is the protocol module's (shared with the child); this adds the reading: batching fast
workers' results, and a torn last line from a killed worker dropped."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import anyio
from anyio.abc import ByteReceiveStream

from ..worker.protocol import Done, Message, decode_lines

MAX_LINE = 64 * 1024 * 1024


async def read_messages(
    stream: ByteReceiveStream,
    coalesce: float = 0.0,
    final: type[Message] = Done,
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
            messages = decode_lines(bytes(buffer[:end]).split(b"\n"))
            del buffer[: end + 1]
        for message in messages:
            yield message
        if len(buffer) > MAX_LINE:
            raise ValueError("child protocol line exceeds 64 MiB")
        if coalesce:
            now = clock()
            if now - last_chunk < coalesce and not (messages and isinstance(messages[-1], final)):
                await sleep(coalesce)
                now = clock()
            last_chunk = now

"""The child protocol: one schema both sides encode and decode; the engine's reader tolerates a
torn last line and refuses a foreign protocol version."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest
from anyio.abc import ByteReceiveStream
from anyio.streams.memory import MemoryObjectReceiveStream

from test_framework.execution.channel import read_messages
from test_framework.worker.board import FINISHED, RUNNING, BoardReader, BoardWriter, create
from test_framework.worker.protocol import (
    PROTOCOL_VERSION,
    Collected,
    CollectFailed,
    Deps,
    Done,
    Exited,
    Fork,
    Forked,
    Hello,
    Message,
    Phase,
    ProtocolError,
    Release,
    Released,
    Result,
    Skip,
    decode,
    decode_line,
    decode_lines,
    encode,
)
from test_framework.worker.selection import (
    FileHead,
    FileSlice,
    FileTests,
    decode_selection,
    encode_selection,
    slice_bounds,
)

EVERY_MESSAGE: list[Message] = [
    Hello(pid=42, rootdir="/r", args=("tests", "a.py::t")),
    Collected(("a.py::t", "a.py::u"), ("a.py::u",), {"a.py::t": ("db",)}, {"a.py::t": 2.5}),
    Collected(("a.py::t",), (), {}, {}, maxfail=2, collectors=7, deselected=1, durations=3),
    CollectFailed("b.py", "ImportError: no", skipped=False, collector=4),
    CollectFailed("c.py", "skipped: later", skipped=True),
    Result("a.py::t", started_at=1.5, cpu=0.25, max_rss=2048, spawned=(7,), passed=0.5),
    Result(
        "a.py::u",
        started_at=2.0,
        phases=(
            Phase("setup", "passed", "", 0.1),
            Phase("call", "failed", "failed", 0.2, "E assert 0", (("Captured stdout", "hi"),)),
            Phase("teardown", "passed", "", 0.0),
        ),
        location=("a.py", 3, "u"),
    ),
    Result("a.py::x", 0.0, phases=(Phase("call", "skipped", "xfailed", 0.1, "r", (), "why"),)),
    Released(("a.py::v",)),
    Deps(("conftest.py",)),
    Deps(("conftest.py",), {"t.py": ("pkg.leaf", "os")}, {"t.py": ("data/a.json", "data/")}),
    Done(1),
    Forked(shard=3, pid=99),
    Exited(pid=99, returncode=-9),
    Skip(("a.py",), "breaker"),
    Release(3),
    Fork(3, "/s/select.json", "/s/out", "/s/stacks", "/s/board"),
]


@pytest.mark.parametrize("message", EVERY_MESSAGE, ids=lambda m: type(m).__name__)
def test_every_message_survives_a_round_trip(message: Message) -> None:
    line = encode(message)
    assert line.endswith(b"\n")
    assert decode_line(line.rstrip()) == message


def test_a_plain_pass_travels_as_its_duration_alone() -> None:
    wire = json.loads(encode(Result("a.py::t", 1.0, cpu=0.1, max_rss=1, passed=0.5)))
    assert "phases" not in wire
    assert wire["passed"] == 0.5


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b"[1, 2]",
        b'{"no_event": 1}',
        b"",
        b'{"event": "unknown"}',
        b'{"event": "forked", "shard": "x"}',
    ],
)
def test_garbage_lines_are_ignored(raw: bytes) -> None:
    assert decode_line(raw) is None


def test_a_different_protocol_version_is_refused() -> None:
    line = json.dumps({"event": "hello", "v": PROTOCOL_VERSION + 1, "pid": 1, "rootdir": "/"})
    with pytest.raises(ProtocolError, match="protocol version"):
        decode_line(line.encode())


def test_a_passing_phase_may_leave_out_what_it_does_not_have() -> None:
    phase = Phase.from_fields({"when": "setup", "outcome": "passed", "duration": 0.1})
    assert (phase.longrepr, phase.sections, phase.category, phase.wasxfail) == ("", (), "", None)
    assert phase.plain


def test_selections_round_trip_and_slices_partition() -> None:
    selection = (
        FileSlice("a.py", 1, 3),
        FileTests("b.py", ("b.py::t",)),
        FileTests("c.py", ("c.py::t[2]",), (4,), 9),
        FileHead("d.py", 2),
        FileHead("e.py", 2, ("e.py::t[1]", "e.py::t[2]")),
    )
    assert decode_selection(encode_selection(selection)) == selection
    for count in (0, 1, 7, 10):
        covered = [i for k in range(3) for i in range(*slice_bounds(k, 3, count))]
        assert covered == list(range(count))


@pytest.mark.anyio
async def test_read_messages_reassembles_split_chunks_and_drops_a_torn_tail() -> None:
    send, receive = anyio.create_memory_object_stream[bytes](1000)
    payload = encode(Deps(("x.py",))) + encode(Done(0)) + b'{"event": "rep'
    async with send:
        for index in range(0, len(payload), 7):  # arbitrary chunking, mid-line cuts included
            await send.send(payload[index : index + 7])
    async with receive:
        messages = [m async for m in read_messages(_ByteStream(receive))]
    assert messages == [Deps(("x.py",)), Done(0)]


def test_a_batch_parses_in_one_go_and_a_bad_line_costs_only_itself() -> None:
    good = [encode(Result(f"t{n}", 0.0, passed=0.1)).rstrip() for n in range(3)]
    assert [m.nodeid for m in decode_lines(good) if isinstance(m, Result)] == ["t0", "t1", "t2"]
    mixed = [good[0], b'{"event": "res', good[2]]
    assert [m.nodeid for m in decode_lines(mixed) if isinstance(m, Result)] == ["t0", "t2"]


def test_decode_takes_decoded_json_values() -> None:
    assert decode({"event": "done", "exitstatus": 5}) == Done(5)
    assert decode("done") is None


@pytest.mark.anyio
async def test_coalescing_waits_between_quick_chunks_but_never_after_the_last() -> None:
    send, receive = anyio.create_memory_object_stream[bytes](10)
    chunks = [
        encode(Result("t0", 0.0, passed=0.0)),
        encode(Result("t1", 0.0, passed=0.0)),  # right after the first: wait, then read
        encode(Result("t2", 0.0, passed=0.0)) + encode(Done(0)),
    ]
    async with send:
        for chunk in chunks:
            await send.send(chunk)
    waits: list[float] = []

    async def record_wait(seconds: float) -> None:
        waits.append(seconds)

    async with receive:
        kinds = [
            type(m)
            async for m in read_messages(
                _ByteStream(receive), coalesce=0.05, clock=lambda: 0.0, sleep=record_wait
            )
        ]
    assert kinds == [Result, Result, Result, Done]
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


class _ByteStream(ByteReceiveStream):
    """Adapts a memory object stream of bytes to the ByteReceiveStream the reader expects."""

    def __init__(self, receive: MemoryObjectReceiveStream[bytes]) -> None:
        self._receive = receive

    async def receive(self, max_bytes: int = 65536) -> bytes:
        return await self._receive.receive()

    async def aclose(self) -> None:
        await self._receive.aclose()

"""The event vocabulary: execution's only output.

The store writer, the console, and the report builders subscribe to this stream; none of them drives
the run. Events are frozen so a subscriber cannot change what another one sees.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from .models import NodeId, Plan, RunSummary, TestResult


@dataclass(frozen=True, slots=True)
class RunStarted:
    run_id: str
    plan: Plan
    capacity: int
    project_root: str
    argv: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class TestRetrying:
    """A failing attempt that will run again in a fresh process after `delay` seconds."""

    __test__ = False
    result: TestResult
    next_attempt: int
    delay: float


@dataclass(frozen=True, slots=True)
class RunStopping:
    """Dispatch stopped early: fail-fast (maxfail) or an interrupt; running shards are stopped."""

    reason: str


@dataclass(frozen=True, slots=True)
class ShardStarted:
    shard_id: int
    pid: int
    nodeids: tuple[NodeId, ...]


@dataclass(frozen=True, slots=True)
class TestStarted:
    __test__ = False
    shard_id: int
    nodeid: NodeId


@dataclass(frozen=True, slots=True)
class TestFinished:
    __test__ = False
    result: TestResult


@dataclass(frozen=True, slots=True)
class ShardFinished:
    shard_id: int
    returncode: int
    duration: float
    files: tuple[str, ...] = ()
    deps: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ShardCrashed:
    """The worker died or misbehaved; `running` names the test it was inside, if any."""

    shard_id: int
    returncode: int | None
    running: NodeId | None
    reason: str
    output_tail: str = ""


@dataclass(frozen=True, slots=True)
class CircuitOpened:
    """Several failures shared one error signature and a probe confirmed it: the rest of the
    affected files is skipped with `reason`."""

    signature: str
    files: tuple[str, ...]
    failures: tuple[NodeId, ...]
    probe: NodeId
    reason: str


@dataclass(frozen=True, slots=True)
class ProcessesLeaked:
    """Processes still alive in a shard's session after its worker ended; they were killed."""

    shard_id: int
    processes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class CapacityChanged:
    old: int
    new: int
    reason: str
    cpu_percent: float
    memory_available: int
    waiting: int
    timestamp: float


@dataclass(frozen=True, slots=True)
class RunFinished:
    summary: RunSummary
    messages: tuple[str, ...] = field(default_factory=tuple)


Event = (
    RunStarted
    | ShardStarted
    | TestStarted
    | TestFinished
    | TestRetrying
    | RunStopping
    | ShardFinished
    | ShardCrashed
    | ProcessesLeaked
    | CircuitOpened
    | CapacityChanged
    | RunFinished
)

Subscriber = Callable[[Event], None]


class EventBus:
    """Delivers each event to every subscriber in order, synchronously.

    Subscribers must not block: the store writer queues, the console prints. A subscriber that
    raises
    is logged and dropped, so a broken reporter can never stop a run.
    """

    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []
        self.failures: list[str] = []

    def subscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.append(subscriber)

    def emit(self, event: Event) -> None:
        for subscriber in list(self._subscribers):
            try:
                subscriber(event)
            except Exception as exc:  # a reporter bug must not end the run
                self.failures.append(f"{subscriber!r} failed on {type(event).__name__}: {exc!r}")
                self._subscribers.remove(subscriber)

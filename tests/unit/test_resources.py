"""The capacity policy (a pure function) and the monitor that applies it, with a fake sampler."""

from __future__ import annotations

from dataclasses import replace

import anyio
import pytest

from test_framework.dispatch.limiter import AdaptiveLimiter
from test_framework.dispatch.monitor import run_monitor
from test_framework.dispatch.resources import (
    CapacityPolicy,
    PsutilSampler,
    ResourceSample,
    compute_capacity,
)
from test_framework.events import CapacityChanged, Event
from test_framework.machine import cpu_count

GIB = 1024**3
POLICY = CapacityPolicy(minimum=1, maximum=8, cpu_high=90.0, cpu_low=60.0, memory_reserve=GIB)


def sample(cpu: float = 50.0, available: int = 8 * GIB) -> ResourceSample:
    return ResourceSample(
        cpu_percent=cpu,
        memory_available=available,
        memory_total=16 * GIB,
        children_rss=0,
        load_per_core=0.5,
    )


@pytest.mark.parametrize(
    ("cpu", "available", "current", "waiting", "expected", "reason"),
    [
        (40.0, 8 * GIB, 2, 5, 3, "cpu idle, tests waiting"),
        (40.0, 8 * GIB, 4, 5, 6, "cpu idle, tests waiting"),  # by half again
        (20.0, 8 * GIB, 4, 5, 8, "cpu idle, tests waiting"),  # doubling: below cpu_low / 2
        (20.0, 8 * GIB, 4, 1, 5, "cpu idle, tests waiting"),  # no more than what waits
        (20.0, 8 * GIB, 2, 0, 2, "steady"),  # idle but nothing waits: no point widening
        (20.0, 8 * GIB, 8, 5, 8, "steady"),  # at the ceiling
        (95.0, 8 * GIB, 4, 5, 3, "cpu saturated"),
        (95.0, 8 * GIB, 1, 5, 1, "steady"),  # never below the floor
        (75.0, 8 * GIB, 4, 5, 4, "steady"),  # between the thresholds
        (20.0, GIB // 2, 8, 5, 4, "memory pressure"),  # memory wins over idle CPU
        (20.0, GIB // 2, 1, 5, 1, "memory pressure"),
    ],
)
def test_compute_capacity(
    cpu: float, available: int, current: int, waiting: int, expected: int, reason: str
) -> None:
    decision = compute_capacity(sample(cpu, available), current, waiting, POLICY)
    assert (decision.capacity, decision.reason) == (expected, reason)


def test_widening_stops_where_memory_would_run_out() -> None:
    """Four workers use 1 GiB each; 2.5 GiB above the reserve holds two more, not four."""
    reading = ResourceSample(
        cpu_percent=10.0,
        memory_available=GIB + 5 * GIB // 2,
        memory_total=16 * GIB,
        children_rss=4 * GIB,
        load_per_core=0.1,
    )
    decision = compute_capacity(reading, 4, 10, POLICY, running=4)
    assert decision.capacity == 6
    # Six workers of 1 GiB and half a GiB to spare: not one more fits.
    full = ResourceSample(
        cpu_percent=10.0,
        memory_available=GIB + GIB // 2,
        memory_total=16 * GIB,
        children_rss=6 * GIB,
        load_per_core=0.1,
    )
    crowded = compute_capacity(full, 6, 10, POLICY, running=6)
    assert (crowded.capacity, crowded.reason) == (6, "memory bounds widening")


def test_widening_is_bounded_by_what_the_next_tests_used_last_time() -> None:
    """Nothing runs yet, so no RSS is measured; the store says the next tests peak at 1 GiB,
    and 2.5 GiB above the reserve hold two such workers: capacity stays at 4 instead of the 8
    an idle CPU would double it to."""
    reading = sample(10.0, available=GIB + 5 * GIB // 2)
    unbounded = compute_capacity(reading, 4, 10, POLICY, running=0)
    assert (unbounded.capacity, unbounded.reason) == (8, "cpu idle, tests waiting")
    bounded = compute_capacity(reading, 4, 10, POLICY, running=0, next_rss=GIB)
    assert (bounded.capacity, bounded.reason) == (4, "memory bounds widening")


def test_cpu_saturation_does_not_narrow_below_the_core_count() -> None:
    per_core = CapacityPolicy(
        minimum=1, maximum=8, cpu_high=90.0, cpu_low=60.0, memory_reserve=GIB, saturation_floor=2
    )
    assert compute_capacity(sample(99.0), 2, 5, per_core).capacity == 2
    assert compute_capacity(sample(99.0), 5, 5, per_core).capacity == 4
    # Memory pressure is another matter: it may go below the cores.
    assert compute_capacity(sample(20.0, GIB // 2), 2, 5, per_core).capacity == 1


def test_capacity_is_clamped_into_the_policy_bounds() -> None:
    decision = compute_capacity(sample(75.0), 20, 0, POLICY)
    assert decision.capacity == 8


def test_psutil_sampler_reads_this_machine() -> None:
    reading = PsutilSampler().sample()
    assert 0.0 <= reading.cpu_percent <= 100.0
    assert 0 < reading.memory_available <= reading.memory_total
    assert reading.children_rss >= 0
    assert cpu_count() >= 1


class ScriptedSampler:
    """A fake at our own seam: replays samples, then repeats the last one."""

    def __init__(self, samples: list[ResourceSample]) -> None:
        self.samples = samples

    def sample(self) -> ResourceSample:
        return self.samples.pop(0) if len(self.samples) > 1 else self.samples[0]


@pytest.mark.anyio
async def test_monitor_widens_then_narrows_and_reports_each_change() -> None:
    limiter = AdaptiveLimiter(2)
    events: list[Event] = []
    sampler = ScriptedSampler([sample(40.0), sample(40.0), sample(99.0)])

    async def waiter() -> None:
        await limiter.acquire()

    async with anyio.create_task_group() as tg:
        await limiter.acquire()
        await limiter.acquire()
        for _ in range(5):
            tg.start_soon(waiter)
        await anyio.wait_all_tasks_blocked()
        three_changes = anyio.Event()

        def record(event: Event) -> None:
            events.append(event)
            if len(events) >= 3:
                three_changes.set()

        tg.start_soon(run_monitor, limiter, sampler, lambda: POLICY, 0.001, record)
        with anyio.fail_after(10):
            await three_changes.wait()
        tg.cancel_scope.cancel()
    changes = [(e.old, e.new, e.reason) for e in events if isinstance(e, CapacityChanged)]
    assert changes[:3] == [
        (2, 3, "cpu idle, tests waiting"),
        (3, 4, "cpu idle, tests waiting"),
        (4, 3, "cpu saturated"),
    ]


@pytest.mark.anyio
async def test_the_monitor_obeys_a_ceiling_learned_while_it_runs() -> None:
    """A cold run learns its tests' CPU share from the first tests, after the monitor
    started: from then on the monitor widens no further than that share allows."""
    limiter = AdaptiveLimiter(2)
    events: list[Event] = []
    sampler = ScriptedSampler([sample(40.0)] * 6)
    policy = POLICY

    async def waiter() -> None:
        await limiter.acquire()

    async with anyio.create_task_group() as tg:
        await limiter.acquire()
        await limiter.acquire()
        for _ in range(5):
            tg.start_soon(waiter)
        await anyio.wait_all_tasks_blocked()
        first_change = anyio.Event()

        def record(event: Event) -> None:
            nonlocal policy
            events.append(event)
            policy = replace(POLICY, maximum=3)  # learned: the tests keep a core busy
            first_change.set()

        tg.start_soon(run_monitor, limiter, sampler, lambda: policy, 0.001, record)
        with anyio.fail_after(10):
            await first_change.wait()
            while len(sampler.samples) > 1:  # noqa: ASYNC110 (sampled in a worker thread)
                await anyio.sleep(0.005)
        tg.cancel_scope.cancel()
    changes = [(e.old, e.new) for e in events if isinstance(e, CapacityChanged)]
    assert changes == [(2, 3)]
    assert limiter.statistics().capacity == 3

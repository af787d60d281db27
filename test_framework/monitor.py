"""The resource monitor: samples a few times a second and moves the limiter's capacity.

Runs as one task inside the run's task group; it only ever calls `compute_capacity` and
`limiter.set_capacity`, and reports every change as a CapacityChanged event.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import anyio

from .events import CapacityChanged, Event
from .limiter import AdaptiveLimiter
from .resources import CapacityPolicy, Sampler, compute_capacity


async def run_monitor(
    limiter: AdaptiveLimiter,
    sampler: Sampler,
    policy: CapacityPolicy,
    interval: float,
    emit: Callable[[Event], None],
    clock: Callable[[], float] = time.time,
) -> None:
    while True:
        await anyio.sleep(interval)
        sample = await anyio.to_thread.run_sync(sampler.sample)
        stats = limiter.statistics()
        decision = compute_capacity(sample, stats.capacity, stats.waiting, policy)
        if decision.capacity != stats.capacity:
            limiter.set_capacity(decision.capacity)
            emit(
                CapacityChanged(
                    old=stats.capacity,
                    new=decision.capacity,
                    reason=decision.reason,
                    cpu_percent=sample.cpu_percent,
                    memory_available=sample.memory_available,
                    waiting=stats.waiting,
                    timestamp=clock(),
                )
            )

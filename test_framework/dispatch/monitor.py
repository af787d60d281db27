"""The resource monitor: samples a few times a second and moves the limiter's capacity.

Runs as one task inside the run's task group; it only ever calls `compute_capacity` and
`limiter.set_capacity`, and reports every change as a CapacityChanged event.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import anyio

from ..events import CapacityChanged, Event
from .limiter import AdaptiveLimiter
from .resources import CapacityPolicy, Sampler, compute_capacity


async def run_monitor(
    limiter: AdaptiveLimiter,
    sampler: Sampler,
    policy: Callable[[], CapacityPolicy],
    interval: float,
    emit: Callable[[Event], None],
    clock: Callable[[], float] = time.time,
    backlog: Callable[[], int] | None = None,
    next_rss: Callable[[], int] | None = None,
) -> None:
    """`backlog` counts shards not yet admitted (the dispatcher's queue and the one waiting at
    the limiter); without it the limiter's own waiters are counted. `next_rss` is the peak RSS
    the next shards' tests showed before, which bounds widening with the running workers'.
    `policy` is read at every sample: what the run learns (a cold run's first tests' CPU share)
    bounds the monitor from then on."""
    while True:
        await anyio.sleep(interval)
        sample = await anyio.to_thread.run_sync(sampler.sample)
        stats = limiter.statistics()
        waiting = backlog() if backlog is not None else stats.waiting
        decision = compute_capacity(
            sample,
            stats.capacity,
            waiting,
            policy(),
            running=stats.in_use,
            next_rss=next_rss() if next_rss is not None else 0,
        )
        if decision.capacity != stats.capacity:
            limiter.set_capacity(decision.capacity)
            emit(
                CapacityChanged(
                    old=stats.capacity,
                    new=decision.capacity,
                    reason=decision.reason,
                    cpu_percent=sample.cpu_percent,
                    memory_available=sample.memory_available,
                    waiting=waiting,
                    at=clock(),
                )
            )

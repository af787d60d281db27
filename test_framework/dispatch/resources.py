"""Resource sampling and the pure capacity policy the monitor applies.

`compute_capacity` is a pure function of one sample, the current capacity and the policy, so it is
tested with made-up numbers; `PsutilSampler` is the one place that touches psutil, behind the
`Sampler` protocol so tests hand in a fake.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Protocol

import psutil

from ..machine import tree_rss


@dataclass(frozen=True, slots=True)
class ResourceSample:
    cpu_percent: float  # whole machine, 0-100
    memory_available: int  # bytes
    memory_total: int
    children_rss: int  # bytes, all our descendants
    load_per_core: float


class Sampler(Protocol):
    def sample(self) -> ResourceSample: ...


@dataclass(frozen=True, slots=True)
class CapacityPolicy:
    minimum: int
    maximum: int
    cpu_high: float
    cpu_low: float
    memory_reserve: int  # bytes
    # CPU saturation narrows no further than this (the core count): a busy CPU at one worker per
    # core is the goal, not a problem. Only memory pressure goes below it.
    saturation_floor: int = 1


@dataclass(frozen=True, slots=True)
class CapacityDecision:
    capacity: int
    reason: str


def compute_capacity(
    sample: ResourceSample,
    current: int,
    waiting: int,
    policy: CapacityPolicy,
    running: int = 0,
    next_rss: int = 0,
) -> CapacityDecision:
    """One step of the adaptive policy.

    Memory pressure narrows first (halving: a machine that swaps helps nobody); CPU saturation
    narrows one slot at a time; an idle CPU with shards waiting widens by half again, or doubles
    below half of `cpu_low` (tests that sleep or wait on sockets want many slots quickly), but
    never past what the memory left
    above the reserve holds at the RSS the running workers show. Always within
    [minimum, maximum], never below 1.
    """
    floor = max(1, policy.minimum)
    ceiling = max(floor, policy.maximum)
    spare = sample.memory_available - policy.memory_reserve
    if spare < 0:
        return CapacityDecision(max(floor, current // 2), "memory pressure")
    saturation_floor = max(floor, min(ceiling, policy.saturation_floor))
    if sample.cpu_percent >= policy.cpu_high and current > saturation_floor:
        return CapacityDecision(max(saturation_floor, current - 1), "cpu saturated")
    if sample.cpu_percent <= policy.cpu_low and waiting > 0 and current < ceiling:
        # A new worker costs what the running ones show, or what the tests about to start
        # showed last time (`next_rss`, from the store), whichever is more.
        per_worker = sample.children_rss / running if running > 0 else 0.0
        per_worker = max(per_worker, float(next_rss))
        if per_worker > 0:
            ceiling = min(ceiling, max(current, running + int(spare / per_worker)))
        # Doubling when the CPU is mostly idle: a cold run of waiting tests starts at the core
        # count and should reach dozens of slots in a few ticks, not a dozen.
        step = current if sample.cpu_percent <= policy.cpu_low / 2 else max(1, current // 2)
        wider = min(ceiling, current + step, current + waiting)
        if wider > current:
            return CapacityDecision(wider, "cpu idle, tests waiting")
        return CapacityDecision(current, "memory bounds widening")
    return CapacityDecision(min(ceiling, max(floor, current)), "steady")


class PsutilSampler:
    """Samples the machine and our own process tree."""

    def __init__(self, root_pid: int | None = None, rss_every: float = 1.0) -> None:
        self._root = psutil.Process(root_pid or os.getpid())
        psutil.cpu_percent(interval=None)  # prime: the first call has no interval to measure
        # Walking the process tree scans all of /proc: ~10 ms, too dear ten times a second.
        # Workers' RSS changes slowly next to that; memory pressure itself is read every time.
        self._rss_every = rss_every
        self._rss = 0
        self._rss_at = -rss_every

    def _children_rss(self) -> int:
        now = time.monotonic()
        if now - self._rss_at >= self._rss_every:
            self._rss, self._rss_at = tree_rss(self._root, include_root=False), now
        return self._rss

    def sample(self) -> ResourceSample:
        memory = psutil.virtual_memory()
        rss = self._children_rss()
        try:
            load = os.getloadavg()[0] / (os.cpu_count() or 1)
        except OSError:
            load = 0.0
        return ResourceSample(
            cpu_percent=psutil.cpu_percent(interval=None),
            memory_available=memory.available,
            memory_total=memory.total,
            children_rss=rss,
            load_per_core=load,
        )

"""A weighted, FIFO capacity limiter whose capacity can change while the run goes on.

anyio's CapacityLimiter has no weights; a test marked serial must hold every slot, and a shard that
expects to use a lot of memory may hold several. Waiters are served strictly in arrival order, so a
heavy shard at the head is not starved by light ones behind it. Narrowing never preempts: holders
keep their slots and the limiter simply admits nobody until usage falls below the new capacity.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import anyio


@dataclass(frozen=True, slots=True)
class LimiterStatistics:
    capacity: int
    in_use: int
    waiting: int
    peak_in_use: int


class AdaptiveLimiter:
    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self._capacity = capacity
        self._in_use = 0
        self._peak = 0
        self._waiters: deque[tuple[int, anyio.Event]] = deque()

    @property
    def capacity(self) -> int:
        return self._capacity

    def set_capacity(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self._capacity = capacity
        self._wake()

    def _fits(self, weight: int) -> bool:
        # A weight above capacity means "everything": it is admitted into an empty limiter only.
        return self._in_use == 0 or self._in_use + weight <= self._capacity

    async def acquire(self, weight: int = 1) -> int:
        """Wait for `weight` slots; returns the slots actually taken (pass it to release)."""
        if weight < 1:
            raise ValueError(f"weight must be >= 1, got {weight}")
        if not self._waiters and self._fits(weight):
            return self._take(weight)
        event = anyio.Event()
        entry = (weight, event)
        self._waiters.append(entry)
        try:
            await event.wait()
        except BaseException:
            if entry in self._waiters:
                self._waiters.remove(entry)
            else:  # granted while being cancelled: give it back
                self.release(weight)
            raise
        return weight

    def _take(self, weight: int) -> int:
        self._in_use += weight
        self._peak = max(self._peak, self._in_use)
        return weight

    def release(self, taken: int) -> None:
        self._in_use -= taken
        if self._in_use < 0:
            raise RuntimeError("limiter released more than was acquired")
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self._fits(self._waiters[0][0]):
            weight, event = self._waiters.popleft()
            self._take(weight)
            event.set()

    def statistics(self) -> LimiterStatistics:
        return LimiterStatistics(
            capacity=self._capacity,
            in_use=self._in_use,
            waiting=len(self._waiters),
            peak_in_use=self._peak,
        )

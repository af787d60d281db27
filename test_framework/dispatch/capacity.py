"""How wide a run starts and when it widens from what it learns: the slot policy.

Pure over plain numbers: the store's CPU shares (or, in a cold run, the first tests' own) say what
fraction of a core the tests keep busy; tests that mostly wait can use cores / share slots. The
monitor (monitor.py) still narrows when the machine disagrees.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..request import RunSettings
from ..store.queries import bounded_fraction
from .resources import CapacityPolicy

# How many finished tests (at least one per core) a run without known CPU shares measures
# before it widens to what they show.
FIRST_TESTS_MEASURED = 2


@dataclass(frozen=True, slots=True)
class SlotPolicy:
    cores: int
    initial: int
    maximum: int
    fixed: int | None = None  # --workers: no learning, no monitor
    monitoring: bool = True

    def busy_workers(self, fraction: float | None) -> int | None:
        """How many workers tests known to keep a core busy a fraction f of their time can
        use: about cores / f, within the profile's bounds. None when the share is unknown."""
        if fraction is None:
            return None
        wanted = round(self.cores / max(fraction, 1.0 / self.maximum))
        return max(self.initial, min(self.maximum, wanted))

    def widened(self, current: int, busy: int | None) -> int | None:
        """The capacity to widen to from what the tests' CPU share says (never narrower); None
        when nothing changes or the capacity is not the engine's to learn."""
        if busy is None or self.fixed or not self.monitoring:
            return None
        start = max(current, busy)
        return None if start == current else start


@dataclass
class FirstTests:
    """CPU and wall seconds of a cold run's first finished tests, until `needed` are in: what the
    store would have said, so a suite of waiting tests gets its dozens of slots at once instead
    of after the monitor's many small steps."""

    needed: int
    cpu: float = 0.0
    wall: float = 0.0
    count: int = 0

    @classmethod
    def for_cores(cls, cores: int) -> FirstTests:
        return cls(needed=max(FIRST_TESTS_MEASURED, cores))

    def add(self, cpu_time: float, duration: float) -> float | None:
        """Take one finished test; once enough are in, their CPU share (else None)."""
        self.cpu += cpu_time
        self.wall += duration
        self.count += 1
        if self.count < self.needed:
            return None
        return bounded_fraction(self.cpu, self.wall)

    @property
    def complete(self) -> bool:
        return self.count >= self.needed


def capacity_policy(settings: RunSettings) -> CapacityPolicy:
    """The monitor's bounds and thresholds, from the run's profile."""
    profile = settings.profile
    return CapacityPolicy(
        minimum=profile.min_workers,
        maximum=settings.max_workers,
        cpu_high=profile.cpu_high,
        cpu_low=profile.cpu_low,
        memory_reserve=profile.memory_reserve_mb * 1024 * 1024,
        saturation_floor=settings.initial_workers,
    )

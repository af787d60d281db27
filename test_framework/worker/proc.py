"""What a worker and the engine need to know to blame a leaked process on a test. Standard library
only (the worker imports it).

First choice: the worker lists its own children after each test (Linux exposes them cheaply in
/proc/self/task/*/children), so a child that appeared during a test is that test's. A leak that
was reparented before the test ended (a double fork) is placed by time instead: on Linux a
process's start time is kept in clock ticks since boot (/proc/<pid>/stat), so the worker stamps
test starts with CLOCK_BOOTTIME and both sides compare like with like, to the tick. Elsewhere it
is wall time, against psutil's create_time.
"""

from __future__ import annotations

import os
import sys
import time

BOOT_CLOCK = sys.platform.startswith("linux") and hasattr(time, "CLOCK_BOOTTIME")


def now() -> float:
    if BOOT_CLOCK:
        return time.clock_gettime(time.CLOCK_BOOTTIME)
    return time.time()


def process_started(pid: int) -> float | None:
    """When `pid` started, on the clock of `now()`; None when that cannot be read here."""
    if not BOOT_CLOCK:
        return None
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            fields = handle.read().rsplit(b")", 1)[1].split()
        return int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def started_at() -> float | None:
    """When this process started, as wall-clock time (`time.time()`), to a clock tick; None
    where that cannot be read here."""
    started = process_started(os.getpid())
    if started is None:
        return None
    return time.time() - (now() - started)


def own_children() -> set[int] | None:
    """Pids of this process's children, or None where the kernel does not list them."""
    if not BOOT_CLOCK:
        return None
    children: set[int] = set()
    try:
        for thread in os.listdir("/proc/self/task"):
            with open(f"/proc/self/task/{thread}/children", "rb") as handle:
                children.update(int(pid) for pid in handle.read().split())
    except (OSError, ValueError):
        return None
    return children

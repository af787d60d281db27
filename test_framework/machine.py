"""Facts about this machine and its process trees, for every stage that sizes or watches work:
how many cores this process may use, how much memory a process tree holds."""

from __future__ import annotations

import os

import psutil


def tree_rss(root: psutil.Process, *, include_root: bool = True) -> int:
    """Resident memory of a process's descendants (and of the process itself), in bytes; the
    processes that go away meanwhile count nothing."""
    processes = root.children(recursive=True)
    if include_root:
        processes.insert(0, root)
    total = 0
    for process in processes:
        try:
            total += process.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return total


def cpu_count() -> int:
    """Cores this process may use (affinity and cgroup-aware where the OS tells)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)

"""Checks on processes the tests started, shared by the unit and end-to-end tests."""

from __future__ import annotations

import psutil


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def dies(pid: int, timeout: float = 10) -> bool:
    """SIGKILL is delivered asynchronously: give the process a moment to be gone."""
    try:
        psutil.Process(pid).wait(timeout=timeout)
    except psutil.NoSuchProcess:
        pass
    except psutil.TimeoutExpired:
        return not alive(pid)
    return True

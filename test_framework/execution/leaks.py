"""Processes a worker left behind: found by session, killed, and reported.

Every worker leads its own session (spawned with `start_new_session`, forked children call
`setsid`), and a process keeps its session id when its parent exits and it is reparented. So after
the worker is gone, any process still in that session was started by the shard's tests (or by
something they started) and outlived it: a leak. Killing the worker's process group alone would
miss a leak that moved to a process group of its own; the session catches it.
"""

from __future__ import annotations

import contextlib
import os
import signal
from dataclasses import dataclass

import psutil

from ..worker.proc import process_started


@dataclass(frozen=True, slots=True)
class LeakedProcess:
    pid: int
    command: str
    started_at: float  # on the clock of `proc.now()`, which workers stamp test starts with


def find_session_members(session_id: int) -> list[LeakedProcess]:
    """Every live process in the session `session_id`, its leader excluded."""
    found: list[LeakedProcess] = []
    for pid in psutil.pids():
        if pid == session_id:
            continue
        try:
            if os.getsid(pid) != session_id:
                continue
            process = psutil.Process(pid)
            if process.status() == psutil.STATUS_ZOMBIE:
                continue
            command = " ".join(process.cmdline()) or process.name()
            started = process_started(pid)
            found.append(
                LeakedProcess(pid, command, process.create_time() if started is None else started)
            )
        except (OSError, psutil.Error):
            continue  # gone meanwhile, or not ours to inspect
    return found


def kill_processes(processes: list[LeakedProcess]) -> None:
    for leaked in processes:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(leaked.pid, signal.SIGKILL)


def describe(leaked: LeakedProcess, test: str | None) -> str:
    command = leaked.command if len(leaked.command) <= 120 else leaked.command[:117] + "..."
    during = f", started while {test} ran" if test else ""
    return f"pid {leaked.pid} `{command}`{during}"

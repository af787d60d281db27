"""`--trace PATH.json`: the run as Chrome trace events, which Perfetto (ui.perfetto.dev) and
chrome://tracing open.

One process ("test_framework run"), one thread per worker slot; each worker process is a
complete event (`X`, category `shard`) on its slot's thread with its tests nested inside it
(category: the outcome); the slots the monitor allowed are a counter (`C`, "capacity"). Times
are microseconds from the run's start, as the format wants.
"""

from __future__ import annotations

import json
from typing import Any

from .run_document import RunDocument

PID = 1


def trace_events(document: RunDocument) -> list[dict[str, Any]]:
    origin = document.origin()

    def us(t: float) -> float:
        return round((t - origin) * 1e6, 1)

    slots = sorted(
        {s.slot for s in document.shards} | {t.slot for t in document.tests if t.slot is not None}
    )
    events: list[dict[str, Any]] = [
        {"ph": "M", "pid": PID, "name": "process_name", "args": {"name": "test_framework run"}}
    ]
    events += [
        {
            "ph": "M",
            "pid": PID,
            "tid": slot + 1,
            "name": "thread_name",
            "args": {"name": f"slot {slot}"},
        }
        for slot in slots
    ]
    for shard in document.shards:
        end = shard.end if shard.end is not None else shard.start
        events.append(
            {
                "ph": "X",
                "pid": PID,
                "tid": shard.slot + 1,
                "name": f"shard {shard.shard}" + (" (crashed)" if shard.crashed else ""),
                "cat": "shard",
                "ts": us(shard.start),
                "dur": round(max(0.0, end - shard.start) * 1e6, 1),
                "args": {"tests": shard.tests, "attempt": shard.attempt},
            }
        )
    for test in document.tests:
        if test.start is None or test.slot is None:
            continue  # cached, not run, or decided by the engine: no time on a worker
        events.append(
            {
                "ph": "X",
                "pid": PID,
                "tid": test.slot + 1,
                "name": test.nodeid,
                "cat": test.outcome,
                "ts": us(test.start),
                "dur": round(test.duration * 1e6, 1),
                "args": {"outcome": test.outcome, "attempts": test.attempts, "shard": test.shard},
            }
        )
    capacity = document.capacity_steps()
    events += [
        {"ph": "C", "pid": PID, "name": "capacity", "ts": us(t), "args": {"slots": slots_now}}
        for t, slots_now in capacity
    ]
    return events


def render_trace(document: RunDocument) -> str:
    return json.dumps(
        {
            "traceEvents": trace_events(document),
            "displayTimeUnit": "ms",
            "otherData": {"run_id": document.run_id, "exit_code": document.exit_code},
        }
    )

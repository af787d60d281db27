"""What a worker's messages and its end mean as results: a test's reports folded into its
outcome, the culprit of a crash, a hang or a memory blow-up, a test the engine kept from running.
Pure: values in, `TestResult` out."""

from __future__ import annotations

import signal
import time
from typing import Protocol

from ..models import (
    NodeId,
    Outcome,
    PhaseReport,
    Shard,
    TestResult,
    engine_result,
    final_outcome,
)
from ..worker import proc
from ..worker.protocol import Result


class ShardOutcomeLike(Protocol):
    @property
    def returncode(self) -> int | None: ...
    @property
    def output_tail(self) -> str: ...


def test_result(message: Result, shard: Shard) -> TestResult:
    if message.withheld is not None:
        return withheld(message.nodeid, message.withheld, shard)
    if message.passed is not None:
        return TestResult(
            message.nodeid,
            Outcome.PASSED,
            message.passed,
            shard.attempt,
            (),
            "",
            shard.shard_id,
            message.cpu,
            message.max_rss,
            wall_time(message.started_at),
        )
    reports = tuple(
        PhaseReport(
            message.nodeid,
            p.when,
            p.outcome,
            p.category,
            p.duration,
            p.longrepr,
            p.sections,
            message.location,
            p.wasxfail,
            p.where,
            p.word,
        )
        for p in message.phases
    )
    return TestResult(
        nodeid=message.nodeid,
        outcome=final_outcome(reports),
        duration=sum(r.duration for r in reports),
        attempt=shard.attempt,
        reports=reports,
        shard_id=shard.shard_id,
        cpu_time=message.cpu,
        max_rss=message.max_rss,
        started_at=wall_time(message.started_at),
    )


def wall_time(worker_time: float) -> float | None:
    """A worker's `proc.now()` stamp as wall-clock time (both sides read the same clock)."""
    if not worker_time:
        return None
    return time.time() - (proc.now() - worker_time)


def describe_exit(returncode: int | None) -> str:
    if returncode is None:
        return "the worker did not exit"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"the worker was killed by {name}"
    return f"the worker exited with status {returncode}"


def culprit_result(
    shard: Shard,
    nodeid: NodeId,
    duration: float,
    outcome: ShardOutcomeLike,
    *,
    timed_out: float | None,
    stacks: str,
    memory: tuple[int | None, int],
) -> TestResult:
    """The test that was running when its worker died, hung past its timeout (`timed_out`, with
    every thread's `stacks`) or passed the memory limit (`memory`: the RSS reached, the limit)."""
    exceeded, limit = memory
    if timed_out is not None:
        message = f"timeout: the test ran longer than {timed_out:g}s; its worker was killed"
        detail = f"{message}\n\n--- stacks of the hung worker ---\n{stacks}"
        kind = Outcome.TIMEOUT
    elif exceeded is not None:
        message = (
            f"crashed: memory limit: the worker's RSS reached {exceeded / 2**20:.0f} MB, above "
            f"the {limit / 2**20:.0f} MB limit, while this test ran; its worker was killed"
        )
        detail = message
        kind = Outcome.CRASHED
    else:
        message = f"crashed: {describe_exit(outcome.returncode)} while this test ran"
        detail = message
        kind = Outcome.CRASHED
    report = PhaseReport(
        nodeid=nodeid,
        when="call",
        outcome="failed",
        category=kind.value,
        duration=duration,
        longrepr=with_output_tail(detail, outcome.output_tail),
    )
    return TestResult(
        nodeid=nodeid,
        outcome=kind,
        duration=duration,
        attempt=shard.attempt,
        reports=(report,),
        message=message,
        shard_id=shard.shard_id,
    )


def withheld(nodeid: NodeId, reason: str, shard: Shard) -> TestResult:
    """A test the engine kept from running (the circuit breaker): not run, with why."""
    return TestResult(
        nodeid,
        Outcome.NOT_RUN,
        0.0,
        shard.attempt,
        message=f"not run: {reason}",
        shard_id=shard.shard_id,
    )


def with_output_tail(message: str, output_tail: str) -> str:
    """A crash report: what happened, then the last output the worker left."""
    return f"{message}\n\n--- last output of the worker ---\n{output_tail[-8000:]}"


def crashed_before_start(nodeid: NodeId, shard: Shard, outcome: ShardOutcomeLike) -> TestResult:
    """A test whose worker died before its first test began (at import, in a conftest)."""
    code = outcome.returncode
    how = f"signal {-code}" if code is not None and code < 0 else f"exit status {code}"
    message = f"crashed: the worker died ({how}) before this test started"
    return engine_result(
        nodeid,
        Outcome.CRASHED,
        "setup",
        message,
        with_output_tail(message, outcome.output_tail),
        attempt=shard.attempt,
        shard_id=shard.shard_id,
    )

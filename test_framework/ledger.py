"""The ledger: the run's account of every test, and the one place that decides what a result
means. It never acts.

`record(result)` takes an attempt a worker finished and answers with decisions: `Final` (the
test's answer in this run), `Retry` (run it again after a backoff), `Stop` (maxfail reached) and
`OpenCircuit` (the breaker saw one cause behind many failures). `conclude(result)` takes a
result the engine decided itself (a collection error, a crash before the test began, a session
timeout), which is final at once. The dispatcher carries the decisions out; the summary is the
ledger's, so the exit code follows from what it recorded and nothing else.

Pure: no processes, no clock, no event loop; the retry jitter comes from an injected random
source, so every decision can be tested as a value.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace

from .breaker import BreakerOpened, FailureBreaker
from .models import (
    FAILING_OUTCOMES,
    RETRYABLE_OUTCOMES,
    NodeId,
    Outcome,
    RunSummary,
    TestResult,
    file_of,
)
from .outcomes import count_outcomes, exit_code_for


@dataclass(frozen=True, slots=True)
class Final:
    result: TestResult


@dataclass(frozen=True, slots=True)
class Retry:
    result: TestResult
    next_attempt: int
    delay: float


@dataclass(frozen=True, slots=True)
class Stop:
    reason: str


@dataclass(frozen=True, slots=True)
class OpenCircuit:
    opened: BreakerOpened


Decision = Final | Retry | Stop | OpenCircuit


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with jitter: attempt n waits base * factor^(n-1), at most `max_delay`,
    times a random factor in [0.5, 1] so failures of one cause do not retry in lockstep."""

    retries: int = 0
    base_delay: float = 0.5
    factor: float = 2.0
    max_delay: float = 10.0
    random: Callable[[], float] = field(default=random.random, compare=False)

    def delay(self, attempt: int) -> float:
        backoff = min(self.max_delay, self.base_delay * self.factor ** (attempt - 1))
        return backoff * (0.5 + 0.5 * self.random())


class Ledger:
    def __init__(
        self,
        *,
        retry: RetryPolicy | None = None,
        maxfail: int = 0,
        breaker: FailureBreaker | None = None,
        flaky_fails: bool = False,
    ) -> None:
        self.retry = retry or RetryPolicy()
        self.maxfail = maxfail
        self.breaker = breaker or FailureBreaker(0)
        self.flaky_fails = flaky_fails
        self.planned: dict[NodeId, None] = {}
        self.final: dict[NodeId, TestResult] = {}
        # Failed attempts waiting for their retry: if the run stops first, the failure stands.
        self.pending: dict[NodeId, TestResult] = {}
        self.failures = 0
        self.stop_reason: str | None = None
        self.interrupted = False
        # What the engine decided on its own that changed what ran, for the summary.
        self.notes: list[str] = []
        self.circuits: list[BreakerOpened] = []

    @property
    def stopped(self) -> bool:
        return self.stop_reason is not None

    def plan(self, nodeids: Iterable[NodeId]) -> None:
        """Tests the run owes an answer for; any still unanswered at the end is `not_run`."""
        self.planned.update(dict.fromkeys(nodeids))

    def collected(self, expected: Iterable[NodeId], actual: Iterable[NodeId]) -> None:
        """A worker collected its share: the tests it runs are owed an answer; a planned test
        it did not collect is no test of this run (its id came from an older collection, or
        embeds the time), so it is never reported `not run`. A test with an answer, or a
        failure waiting for its retry, stays."""
        found = dict.fromkeys(actual)
        for nodeid in expected:
            if nodeid not in found and nodeid not in self.final and nodeid not in self.pending:
                self.planned.pop(nodeid, None)
        for nodeid in found:
            self.planned.setdefault(nodeid)

    def record(self, result: TestResult) -> tuple[Decision, ...]:
        """An attempt a worker finished: run it again, or its outcome is final."""
        retryable = result.outcome in RETRYABLE_OUTCOMES and "::" in result.nodeid
        if retryable and result.attempt <= self.retry.retries and not self.stopped:
            delay = self.retry.delay(result.attempt)
            self.pending[result.nodeid] = result
            return (Retry(result, result.attempt + 1, delay),)
        if result.attempt > 1 and result.outcome is Outcome.PASSED:
            result = replace(
                result, outcome=Outcome.FLAKY, message=f"passed on attempt {result.attempt}"
            )
        return self.conclude(result)

    def conclude(self, result: TestResult) -> tuple[Decision, ...]:
        """A final result; a test already answered keeps its first answer."""
        if result.nodeid in self.final:
            return ()
        self.pending.pop(result.nodeid, None)
        self.final[result.nodeid] = result
        decisions: list[Decision] = [Final(result)]
        if result.outcome in FAILING_OUTCOMES:
            self.failures += 1
            if self.maxfail and self.failures >= self.maxfail:
                stop = self.stop(
                    f"stopping after {self.failures} failures (maxfail={self.maxfail})"
                )
                if stop is not None:
                    decisions.append(stop)
        opened = self.breaker.record(result)
        if opened is not None:
            self.circuits.append(opened)
            decisions.append(OpenCircuit(opened))
        return tuple(decisions)

    def stop(self, reason: str, *, interrupted: bool = False) -> Stop | None:
        """The first reason to stop wins; a Stop only the first time."""
        if self.stopped:
            return None
        self.stop_reason = reason
        self.interrupted = interrupted
        return Stop(reason)

    def skips(self) -> Mapping[str, str]:
        """Files whose remaining tests an open circuit skips, with the reason."""
        return self.breaker.open_files()

    def close(self) -> tuple[Decision, ...]:
        """The run is over. A test whose failure was waiting for its retry failed (the run
        stopped first: an interrupt, a timeout, maxfail); every other test without an answer is
        `not_run`, with why."""
        why = self.stop_reason or "never dispatched"
        decisions: list[Decision] = []
        for failed in list(self.pending.values()):
            note = f"{failed.message}; " if failed.message else ""
            message = f"{note}its retry did not run: {why}"
            decisions.extend(self.conclude(replace(failed, message=message)))
        for nodeid in [n for n in self.planned if n not in self.final]:
            result = TestResult(nodeid, Outcome.NOT_RUN, 0.0, message=f"not run: {why}")
            decisions.extend(self.conclude(result))
        return tuple(decisions)

    def summary(self, run_id: str, duration: float, errors: Iterable[str] = ()) -> RunSummary:
        """The run's answer from what was recorded, results in plan order."""
        order = {nodeid: index for index, nodeid in enumerate(self.planned)}
        results = tuple(sorted(self.final.values(), key=lambda r: order.get(r.nodeid, len(order))))
        code = exit_code_for(results, interrupted=self.interrupted, flaky_fails=self.flaky_fails)
        return RunSummary(
            run_id=run_id,
            results=results,
            counts=count_outcomes(results),
            duration=duration,
            exit_code=int(code),
            interrupted=self.interrupted,
            errors=tuple(errors),
            notes=(*self.notes, *map(self._circuit_note, self.circuits)),
        )

    def _circuit_note(self, opened: BreakerOpened) -> str:
        """What an open circuit did: the files where it kept tests from running, and how many;
        a file whose tests had all run is not named."""
        withheld = f"not run: {opened.reason}"
        stopped: dict[str, int] = {}
        for result in self.final.values():
            if result.outcome is Outcome.NOT_RUN and result.message == withheld:
                stopped[file_of(result.nodeid)] = stopped.get(file_of(result.nodeid), 0) + 1
        head = (
            f"circuit breaker opened for `{opened.signature}` after {len(opened.failures)} "
            f"failures (probe {opened.probe})"
        )
        if not stopped:
            return f"{head}; every test of its files had already run"
        files = ", ".join(f"{file} ({count})" for file, count in stopped.items())
        return f"{head}; it kept {sum(stopped.values())} tests from running, in {files}"

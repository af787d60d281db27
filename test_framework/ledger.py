"""The ledger: the run's account of every test, and the one place that decides what a result
means. It never acts.

`record(result, context)` takes an attempt a worker finished and answers with decisions:
`Confirm` (a failure seen outside pytest's context must be seen in it before it is reported),
`Final` (the test's answer in this run), `Retry` (run it again after a backoff), `Stop` (maxfail
reached) and `OpenCircuit` (the breaker saw one cause behind many failures). A failure confirmed
in pytest's context is a failure; one that passes there is reported as pytest would report it,
passed, with why the first run differed. `conclude(result)` takes a
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
class Confirm:
    """Run the test again in pytest's context (its file from the first test up to it, in a
    worker that collected the whole selection): it failed `why`."""

    result: TestResult
    why: str


@dataclass(frozen=True, slots=True)
class Reproduce:
    """The test failed `why` and passed in pytest's context: run it again alone, as it first
    ran, to tell a failure that context causes (it fails again) from a flaky one (it passes)."""

    result: TestResult
    why: str


@dataclass(frozen=True, slots=True)
class NeedsContext:
    """The test failed `why` and passed in pytest's context: its file needs that context."""

    nodeid: NodeId
    why: str


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


Decision = Final | Retry | Stop | OpenCircuit | Confirm | Reproduce | NeedsContext

# Outcomes a failure in another context may have caused, so they are confirmed first.
CONFIRMED_OUTCOMES = frozenset({Outcome.FAILED, Outcome.ERROR})


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
        # Failures seen outside pytest's context, waiting to be confirmed in it (-> why), and
        # tests whose failure was seen in it.
        self.confirming: dict[NodeId, str] = {}
        self.confirmed: set[NodeId] = set()
        # Tests that failed outside pytest's context and passed in it (-> why they differed).
        self.context_passes: dict[NodeId, str] = {}
        # Tests that passed in pytest's context, rerun alone to tell context from flakiness:
        # -> (the passing result, why the first run differed).
        self.reproducing: dict[NodeId, tuple[TestResult, str]] = {}
        self.failures = 0
        self.failed_tests: set[NodeId] = set()
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

    def seen_in_context(self, nodeids: Iterable[NodeId]) -> None:
        """Failures already seen in pytest's context with nothing changed since (the skip
        cache's records): failing again out of it, they are final without a confirmation."""
        self.confirmed.update(nodeids)

    def record(
        self, result: TestResult, context: str | None = None, *, alone: bool = False
    ) -> tuple[Decision, ...]:
        """An attempt a worker finished, `context` saying how its run differed from pytest's
        (None: it did not), `alone` whether it is the rerun a `Reproduce` asked for: confirm it,
        run it again, or its outcome is final."""
        nodeid = result.nodeid
        if nodeid in self.final:
            return ()
        failing = result.outcome in CONFIRMED_OUTCOMES and "::" in nodeid
        if nodeid in self.reproducing:
            # Only the alone rerun decides; another confirmation that also ran it does not.
            return self._reproduced(result) if alone else ()
        if nodeid in self.confirming:
            why = self.confirming.pop(nodeid)
            if result.outcome is Outcome.NOT_RUN:  # kept from running (the breaker)
                return self.conclude(self._unconfirmed(self.pending[nodeid], why, result.message))
            if result.outcome not in FAILING_OUTCOMES:
                self.reproducing[nodeid] = (result, why)
                return (Reproduce(result, why),)
            self.confirmed.add(nodeid)  # failed in pytest's context too: a failure
        elif failing and context is not None and nodeid not in self.confirmed:
            if not self.stopped:
                self.confirming[nodeid] = context
                self.pending[nodeid] = result
                return (Confirm(result, context), *self._failed(nodeid))
        elif failing:
            self.confirmed.add(nodeid)
        retryable = result.outcome in RETRYABLE_OUTCOMES and "::" in result.nodeid
        if retryable and result.attempt <= self.retry.retries and not self.stopped:
            delay = self.retry.delay(result.attempt)
            self.pending[result.nodeid] = result
            return (Retry(result, result.attempt + 1, delay), *self._failed(nodeid))
        if nodeid in self.failed_tests and result.outcome is Outcome.PASSED:
            result = replace(
                result, outcome=Outcome.FLAKY, message=f"passed on attempt {result.attempt}"
            )
        return self.conclude(result)

    def _reproduced(self, again: TestResult) -> tuple[Decision, ...]:
        """The alone rerun of a test that failed outside pytest's context and passed in it."""
        nodeid = again.nodeid
        passed, why = self.reproducing.pop(nodeid)
        if again.outcome in FAILING_OUTCOMES:  # the context makes it fail: pytest's answer
            self.context_passes[nodeid] = why
            note = _in_context(why, passed)
            return (*self.conclude(replace(passed, message=note)), NeedsContext(nodeid, why))
        if again.outcome is Outcome.NOT_RUN:
            return self.conclude(replace(passed, message=_in_context(why, passed)))
        note = (
            f"failed once when run {why}, then passed in pytest's context and again as it "
            "first ran: flaky"
        )
        return self.conclude(replace(again, outcome=Outcome.FLAKY, message=note))

    def _unconfirmed(self, failed: TestResult, why: str, because: str) -> TestResult:
        note = f"failed when run {why}; not confirmed in pytest's context: {because}"
        return replace(failed, message=note)

    def conclude(self, result: TestResult) -> tuple[Decision, ...]:
        """A final result; a test already answered keeps its first answer."""
        if result.nodeid in self.final:
            return ()
        self.pending.pop(result.nodeid, None)
        self.final[result.nodeid] = result
        decisions: list[Decision] = [Final(result)]
        if result.outcome in FAILING_OUTCOMES:
            decisions.extend(self._failed(result.nodeid))
        opened = self.breaker.record(result)
        if opened is not None:
            self.circuits.append(opened)
            decisions.append(OpenCircuit(opened))
        return tuple(decisions)

    def _failed(self, nodeid: NodeId) -> tuple[Decision, ...]:
        """A test failed, at once counted for maxfail (as pytest counts): even while its
        failure waits for a retry or a confirmation."""
        self.failed_tests.add(nodeid)
        self.failures = len(self.failed_tests)
        if not self.maxfail or self.failures < self.maxfail:
            return ()
        stop = self.stop(f"stopping after {self.failures} failures (maxfail={self.maxfail})")
        return () if stop is None else (stop,)

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
        for passed, gap in list(self.reproducing.values()):
            decisions.extend(self.conclude(replace(passed, message=_in_context(gap, passed))))
        for failed in list(self.pending.values()):
            if failed.nodeid in self.confirming:
                gap = self.confirming[failed.nodeid]
                decisions.extend(self.conclude(self._unconfirmed(failed, gap, why)))
                continue
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
            notes=(
                *self.notes,
                *self._context_notes(),
                *map(self._circuit_note, self.circuits),
            ),
        )

    def _context_notes(self, limit: int = 10) -> list[str]:
        """Tests reported as pytest reports them although they failed in the engine's first
        run, and why that run differed."""
        items = list(self.context_passes.items())
        notes = [
            f"{nodeid} failed when run {why}; in pytest's order and context it "
            f"{self.final[nodeid].outcome}, and is reported so"
            for nodeid, why in items[:limit]
            if nodeid in self.final
        ]
        if len(items) > limit:
            notes.append(f"... and {len(items) - limit} more tests that differed the same way")
        return notes

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


def _in_context(why: str, result: TestResult) -> str:
    return f"failed when run {why}; in pytest's order and context it {result.outcome}"

"""The failure-class circuit breaker: one broken dependency should not cost a failure per test.

When several tests fail with the same error signature (the exception type and its message, with
addresses and temporary names normalized away: a refused connection to one address, the same
ImportError), the cause is probably outside the tests. After `threshold` such failures the circuit
for that signature is half-open: the next test of an affected file to finish is the probe. If the
probe fails the same way the circuit opens and the rest of the affected files is not run, with the
signature as the reason; if it passes or fails otherwise, the circuit closes and counting starts
again. Assertion failures never form a signature: they are about the code under test.

Pure logic over results, so it is tested without processes; the ledger asks it, the dispatcher
keeps the tests from running. Opt-in: a test kept from running is `not_run`, which is not what
plain pytest would report.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import Enum

from .models import NodeId, Outcome, TestResult, file_of

_ERROR_LINE = re.compile(r"^E\s+((?:[A-Za-z_]\w*\.)*[A-Za-z_]\w*): ?(.*)$")
_NOT_A_SIGNATURE = frozenset({"AssertionError", "assert"})
_VOLATILE = (
    (re.compile(r"0x[0-9a-fA-F]+"), "0x?"),
    (re.compile(r"pytest-of-[^/\s]+/pytest-\d+(/[^\s'\"]*)?"), "<tmp>"),
    (re.compile(r"/tmp/[^\s'\"]+"), "<tmp>"),
    (re.compile(r"\b\d+(\.\d+)?s\b"), "<seconds>"),
)
MAX_SIGNATURE = 200


def error_signature(result: TestResult) -> str | None:
    """`Type: message` of the exception a failed or errored test ended with, normalized; None
    for an assertion failure or when the report names no exception."""
    if result.outcome not in (Outcome.FAILED, Outcome.ERROR):
        return None
    for report in result.reports:
        if report.outcome != "failed" or not report.longrepr:
            continue
        signature = _last_exception(report.longrepr)
        if signature is not None:
            return signature
    return None


def _last_exception(longrepr: str) -> str | None:
    """The first `E   Type: message` line of the last block of `E` lines (the exception that
    ended the test, after any chained ones)."""
    found = None
    in_block = False
    for line in longrepr.splitlines():
        if line.startswith("E "):
            if not in_block:
                match = _ERROR_LINE.match(line)
                found = match if match else None
                in_block = True
        else:
            in_block = False
    if found is None:
        return None
    kind, message = found.group(1), found.group(2).strip()
    if kind.rsplit(".", 1)[-1] in _NOT_A_SIGNATURE or not kind[:1].isupper():
        return None
    for pattern, replacement in _VOLATILE:
        message = pattern.sub(replacement, message)
    signature = f"{kind}: {message}" if message else kind
    return signature[:MAX_SIGNATURE]


class CircuitState(str, Enum):
    CLOSED = "closed"
    HALF_OPEN = "half_open"
    OPEN = "open"


@dataclass
class Circuit:
    signature: str
    failures: list[NodeId] = field(default_factory=list)
    files: dict[str, None] = field(default_factory=dict)
    state: CircuitState = CircuitState.CLOSED
    probe: NodeId | None = None

    def reason(self) -> str:
        return (
            f"circuit breaker: {len(self.failures)} tests failed with `{self.signature}`"
            f" (probe {self.probe} confirmed it)"
        )


@dataclass(frozen=True, slots=True)
class BreakerOpened:
    signature: str
    files: tuple[str, ...]
    failures: tuple[NodeId, ...]
    probe: NodeId
    reason: str


class FailureBreaker:
    def __init__(self, threshold: int) -> None:
        self.threshold = threshold
        self.circuits: dict[str, Circuit] = {}

    @property
    def enabled(self) -> bool:
        return self.threshold > 0

    def open_files(self) -> dict[str, str]:
        """Files whose tests are to be skipped, with the reason."""
        return {
            f: c.reason()
            for c in self.circuits.values()
            if c.state is CircuitState.OPEN
            for f in c.files
        }

    def record(self, result: TestResult) -> BreakerOpened | None:
        """Take one final result; say so when it opens a circuit."""
        if not self.enabled or "::" not in result.nodeid:
            return None
        signature = error_signature(result)
        probed = self._probe(result, signature)
        if probed is not None:
            return probed
        if signature is None:
            return None
        circuit = self.circuits.setdefault(signature, Circuit(signature))
        if circuit.state is not CircuitState.CLOSED:
            return None
        circuit.failures.append(result.nodeid)
        circuit.files[file_of(result.nodeid)] = None
        if len(circuit.failures) >= self.threshold:
            circuit.state = CircuitState.HALF_OPEN
        return None

    def _probe(self, result: TestResult, signature: str | None) -> BreakerOpened | None:
        """A half-open circuit's next finished test from one of its files decides it."""
        file = file_of(result.nodeid)
        for circuit in self.circuits.values():
            if circuit.state is not CircuitState.HALF_OPEN or file not in circuit.files:
                continue
            if result.nodeid in circuit.failures:
                continue
            circuit.probe = result.nodeid
            if signature == circuit.signature:
                circuit.state = CircuitState.OPEN
                circuit.failures.append(result.nodeid)
                return BreakerOpened(
                    signature=circuit.signature,
                    files=tuple(circuit.files),
                    failures=tuple(circuit.failures),
                    probe=result.nodeid,
                    reason=circuit.reason(),
                )
            # The probe disagrees: whatever failed, it was not one cause for the whole file.
            circuit.state = CircuitState.CLOSED
            circuit.failures.clear()
            circuit.files.clear()
            circuit.probe = None
        return None

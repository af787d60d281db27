"""Pure rules from results to counts and to the exit code, shared by every reporter."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping

from .exit_codes import ExitCode
from .models import FAILING_OUTCOMES, SUMMARY_ORDER, Outcome, TestResult

# Outcomes the engine itself decides; pytest's reports do not know them.
_ENGINE_OUTCOMES = frozenset(
    {Outcome.FLAKY, Outcome.CRASHED, Outcome.TIMEOUT, Outcome.NOT_RUN, Outcome.CACHED}
)


def count_outcomes(results: Iterable[TestResult]) -> dict[str, int]:
    """Count like pytest's closing line: one word per pytest report category, so a test that
    passes and then errors in teardown counts as "1 passed, 1 error", exactly as pytest says."""
    counts: Counter[str] = Counter()
    for result in results:
        if result.outcome in _ENGINE_OUTCOMES:
            counts[result.outcome.value] += 1
            continue
        categories = [r.category for r in result.reports if r.category]
        if categories:
            counts.update(categories)
        else:
            counts[result.outcome.value] += 1
    return dict(counts)


def summary_words(counts: Mapping[str, int]) -> list[str]:
    known = [k for k in SUMMARY_ORDER if counts.get(k)]
    extra = sorted(k for k in counts if k not in SUMMARY_ORDER and counts[k])
    words = []
    for key in (*known, *extra):
        label = key.replace("_", " ")
        if key == "error" and counts[key] != 1:
            label = "errors"
        words.append(f"{counts[key]} {label}")
    return words


def exit_code_for(
    results: Iterable[TestResult], *, interrupted: bool, flaky_fails: bool = False
) -> ExitCode:
    if interrupted:
        return ExitCode.INTERRUPTED
    results = list(results)
    if not results:
        return ExitCode.NO_TESTS_COLLECTED
    # A test not run leaves the answer incomplete: never "all passed".
    failing = {*FAILING_OUTCOMES, Outcome.NOT_RUN, *((Outcome.FLAKY,) if flaky_fails else ())}
    if any(r.outcome in failing for r in results):
        return ExitCode.TESTS_FAILED
    return ExitCode.OK

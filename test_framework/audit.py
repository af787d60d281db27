"""`python -m test_framework audit [run options] [-- pytest args]`: does the engine's parallel
run give plain pytest's answer for this suite, test by test?

A parallel run confirms every failure in pytest's context before it reports it, but it cannot
see the other direction: a test that passes only because a polluting test did not run before it
in the same process. So the audit runs the selection twice, the engine's way and as plain pytest
would (one worker that collects everything and runs every file whole, in order), lists every
test whose outcome differs, and for each one searches, within a time budget, the earlier tests
(in pytest's order) that make it behave as it does there: its culprits. Exit 1 when any test
differs, 0 when none does. Retries are off in both runs: the audit is about order, not flakes.
"""

from __future__ import annotations

import dataclasses
import time
from typing import TextIO

from .dispatch.culprits import minimal_needs
from .exit_codes import ExitCode
from .models import NodeId, Outcome, RunSummary
from .orchestrator import run_events
from .request import RunSettings

# Seconds the audit may spend searching culprits, over every differing test.
BISECT_BUDGET_SECONDS = 120.0


async def audit(settings: RunSettings, out: TextIO, budget: float = BISECT_BUDGET_SECONDS) -> int:
    quiet = dataclasses.replace(
        settings,
        report=None,
        junitxml=None,
        list_only=False,
        profile=dataclasses.replace(settings.profile, retries=0),
    )
    out.write("audit: the engine's run...\n")
    engine = await run_events(quiet, [])
    out.write("audit: plain pytest's order (one worker, every file whole, in order)...\n")
    serial = await run_events(dataclasses.replace(quiet, serial=True), [])
    ours = _outcomes(engine)
    theirs = _outcomes(serial)
    order = [r.nodeid for r in serial.results]
    differing = [n for n in order if n in ours and ours[n] is not theirs[n]]
    missing = [n for n in order if n not in ours] + [n for n in ours if n not in theirs]
    deadline = time.monotonic() + budget
    for nodeid in differing:
        out.write(
            f"DIFFERS {nodeid}: the engine's run: {ours[nodeid]}; pytest's order: "
            f"{theirs[nodeid]}\n"
        )
        before = tuple(order[: order.index(nodeid)])
        out.write(f"  {await _culprits(quiet, nodeid, before, theirs[nodeid], deadline)}\n")
    for nodeid in missing:
        out.write(f"DIFFERS {nodeid}: run by only one of the two\n")
    count = len(differing) + len(missing)
    if count:
        out.write(f"audit: {count} of {len(order)} tests differ from pytest's serial order\n")
        return int(ExitCode.TESTS_FAILED)
    out.write(f"audit: {len(order)} tests, every outcome the same as in pytest's serial order\n")
    return int(ExitCode.OK)


async def _culprits(
    settings: RunSettings,
    nodeid: NodeId,
    before: tuple[NodeId, ...],
    wanted: Outcome,
    deadline: float,
) -> str:
    """Which earlier tests make `nodeid` come out `wanted`, as in pytest's order."""

    async def probe(tests: tuple[NodeId, ...]) -> bool:
        summary = await run_events(dataclasses.replace(settings, only=(*tests, nodeid)), [])
        return _outcomes(summary).get(nodeid) is wanted

    found = await minimal_needs(before, probe, lambda: time.monotonic() >= deadline)
    if not found.tests and found.complete:
        return (
            f"alone, after a full collection, it is {wanted} too: the collection (what other "
            f"files import), not an earlier test, makes the difference ({found.probes} runs)"
        )
    names = ", ".join(found.tests) or "(none found)"
    how = "" if found.complete else "; the search ran out of its time budget, so maybe fewer"
    return f"is {wanted} after these earlier tests: {names} ({found.probes} runs{how})"


def _outcomes(summary: RunSummary) -> dict[NodeId, Outcome]:
    return {r.nodeid: r.outcome for r in summary.results}

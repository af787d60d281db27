"""Plugins' terminal summaries for the whole run: one summary process after the workers end.

As pytest-xdist's master does: workers saved their reports (worker/summary.py) and, under
pytest-cov, their coverage data (worker/coverage.py); this runs pytest once more with the
user's arguments, collecting nothing, replays the reports of the attempts the engine reported,
and lets pytest end the session: pytest-cov combines the data and prints its own table, other
plugins print their sections, exactly as configured (their options, ini `addopts`, their config
files). What they printed between the two marker lines is relayed where pytest prints it,
before the short test summary; a plugin that failed the run (`--cov-fail-under`) fails it here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..exit_codes import ExitCode
from ..worker.protocol import (
    ENV_SUMMARY,
    FAILED_BY_PLUGIN,
    SUMMARY_BEGIN,
    SUMMARY_END,
    WORKER_PLUGIN,
    reports_folder,
)
from .process import run_to_end

# The summary process ends as pytest would have: all passed, failures replayed, a replayed stop
# (`-x`, collection errors), or nothing replayed.
_EXPECTED = (ExitCode.OK, ExitCode.TESTS_FAILED, ExitCode.INTERRUPTED, ExitCode.NO_TESTS_COLLECTED)


@dataclass(frozen=True, slots=True)
class PluginReport:
    """What plugins print in pytest's terminal summary, and whether one failed the run."""

    text: str
    failed: bool = False
    problem: str | None = None  # the summary could not be made: why (a warning, not a failure)


@dataclass(frozen=True, slots=True)
class SummaryRequest:
    """The run as the summary process replays it: its tests in order, and how it stopped."""

    order: Sequence[str]
    stop: str | None = None
    interrupted: bool = False


async def plugin_summary(
    request: SummaryRequest,
    pytest_args: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    scratch: Path,
) -> PluginReport:
    instructions = scratch / "summary.json"
    folder = reports_folder(scratch)
    folder.mkdir(parents=True, exist_ok=True)
    instructions.write_text(
        json.dumps(
            {
                "order": list(request.order),
                "reports": str(folder),
                "stop": request.stop,
                "interrupted": request.interrupted,
            }
        ),
        encoding="utf-8",
    )
    code, output = await run_to_end(
        ["-m", "pytest", "-p", WORKER_PLUGIN, *pytest_args],
        cwd=str(cwd),
        env=env,
        protocol_env={ENV_SUMMARY: str(instructions)},
    )
    if code not in _EXPECTED:
        tail = "\n".join(output.rstrip().splitlines()[-5:])
        return PluginReport("", problem=f"plugins' summaries failed (pytest exit {code}): {tail}")
    return PluginReport(between_markers(output), failed=FAILED_BY_PLUGIN in output.splitlines())


def between_markers(output: str) -> str:
    """What plugins printed in the summary process's terminal summary, as printed."""
    lines = output.splitlines()
    if SUMMARY_BEGIN not in lines or SUMMARY_END not in lines:
        return ""
    start = lines.index(SUMMARY_BEGIN) + 1
    end = len(lines) - 1 - lines[::-1].index(SUMMARY_END)
    text = "\n".join(lines[start:end]).strip("\n")
    return text + "\n" if text else ""

"""pytest-cov's table for the whole run: one report process after the workers end.

The workers saved their coverage data as xdist workers do (worker/coverage.py); this runs
pytest once more with the user's arguments, collecting nothing, so pytest-cov's own central
mode combines every worker's data and prints its own table, exactly as configured (`--cov-*`
options, ini `addopts`, the coverage config file). Its section is relayed as pytest would place
it, before the short test summary; `--cov-fail-under` not reached fails the run, as in pytest.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..exit_codes import ExitCode
from ..worker.protocol import ENV_COVERAGE_REPORT, WORKER_PLUGIN
from .process import run_to_end

_CLOSING_LINE = re.compile(r"^=+ .* in [\d.]+s.* =+$")
_SECTION_START = re.compile(r"^(=+ tests coverage =+|ERROR: Coverage failure: .*)$")


@dataclass(frozen=True, slots=True)
class PluginReport:
    """What a plugin prints in pytest's terminal summary, and whether it failed the run."""

    text: str
    failed: bool = False
    problem: str | None = None  # the report could not be made: why (a warning, not a failure)


async def coverage_report(
    pytest_args: Sequence[str], *, cwd: Path, env: Mapping[str, str]
) -> PluginReport:
    code, output = await run_to_end(
        ["-m", "pytest", "-p", WORKER_PLUGIN, *pytest_args],
        cwd=str(cwd),
        env=env,
        protocol_env={ENV_COVERAGE_REPORT: "1"},
    )
    if code not in (ExitCode.OK, ExitCode.TESTS_FAILED, ExitCode.NO_TESTS_COLLECTED):
        tail = "\n".join(output.strip().splitlines()[-5:])
        return PluginReport("", problem=f"pytest-cov's report failed (exit {code}): {tail}")
    return PluginReport(coverage_section(output), failed=code == ExitCode.TESTS_FAILED)


def coverage_section(output: str) -> str:
    """pytest-cov's lines of a pytest run that collected nothing: from its first line to the
    closing line, without the closing line."""
    lines = output.splitlines()
    start = next((i for i, line in enumerate(lines) if _SECTION_START.match(line)), len(lines))
    end = len(lines)
    while end > start and (not lines[end - 1].strip() or _CLOSING_LINE.match(lines[end - 1])):
        end -= 1
    return "\n".join(lines[start:end]) + "\n" if end > start else ""

"""The oracle: what plain, serial pytest says about a suite, read from its own verbose output.

Independent of the engine on purpose (no plugin, no protocol): it runs `pytest -v -rA` and parses
the per-test status lines, so comparing the engine with it checks the engine against pytest and not
against itself. The same reduction as `models.final_outcome` turns several lines for one test
(a pass and a teardown error) into one outcome.
"""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

_STATUS = {
    "PASSED": "passed",
    "FAILED": "failed",
    "ERROR": "error",
    "SKIPPED": "skipped",
    "XFAIL": "xfailed",
    "XPASS": "xpassed",
}
_RANK = {"failed": 6, "error": 5, "xpassed": 4, "xfailed": 3, "skipped": 2, "passed": 1}
_LINE = re.compile(
    r"^(?P<nodeid>\S.*?) (?P<status>PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS)"
    r"(?: \(.*\))?\s+\[\s*\d+%\]$"
)
_SUMMARY_ERROR = re.compile(r"^ERROR (?P<nodeid>\S+?)(?: - .*)?$")
_MODULE_SKIP = re.compile(r"^SKIPPED \[\d+\] (?P<path>[^:]+):\d+: ")


@dataclass(frozen=True, slots=True)
class OracleRun:
    outcomes: dict[str, str]
    exit_code: int
    output: str


def parse_verbose(output: str) -> dict[str, str]:
    outcomes: dict[str, str] = {}
    seen_files: set[str] = set()

    def put(nodeid: str, outcome: str) -> None:
        old = outcomes.get(nodeid)
        if old is None or _RANK[outcome] > _RANK[old]:
            outcomes[nodeid] = outcome

    lines = output.splitlines()
    for line in lines:
        match = _LINE.match(line.rstrip())
        if match:
            nodeid = match.group("nodeid")
            put(nodeid, _STATUS[match.group("status")])
            seen_files.add(nodeid.split("::", 1)[0])
    for line in lines:
        error = _SUMMARY_ERROR.match(line.rstrip())
        if error and error.group("nodeid") not in outcomes and "::" not in error.group("nodeid"):
            put(error.group("nodeid"), "error")  # a file that failed to collect
        skip = _MODULE_SKIP.match(line)
        if skip and skip.group("path") not in seen_files and skip.group("path").endswith(".py"):
            put(skip.group("path"), "skipped")  # a module-level skip
    return outcomes


def run_pytest(python: str, root: Path, args: Sequence[str] = ()) -> OracleRun:
    completed = subprocess.run(
        [
            python,
            "-m",
            "pytest",
            "-v",
            "-rA",
            "-p",
            "no:cacheprovider",
            "--continue-on-collection-errors",
            "--color=no",
            *args,
        ],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
    )
    return OracleRun(parse_verbose(completed.stdout), completed.returncode, completed.stdout)


def run_engine(
    python: str,
    root: Path,
    args: Sequence[str] = (),
    engine_args: Sequence[str] = ("--retries", "0"),
    env: Mapping[str, str] | None = None,
) -> OracleRun:
    with tempfile.TemporaryDirectory() as scratch:
        report = Path(scratch) / "report.json"
        completed = subprocess.run(
            [
                python,
                "-m",
                "test_framework",
                "--project-root",
                str(root),
                "--cache-dir",
                str(Path(scratch) / "cache"),
                "--report",
                str(report),
                *engine_args,
                "--",
                *args,
            ],
            cwd=root,
            capture_output=True,
            text=True,
            check=False,
            env=None if env is None else dict(env),
        )
        outcomes = {}
        if report.exists():
            document = json.loads(report.read_text(encoding="utf-8"))
            outcomes = {t["nodeid"]: t["outcome"] for t in document["tests"]}
    return OracleRun(outcomes, completed.returncode, completed.stdout + completed.stderr)


def differences(expected: Mapping[str, str], actual: Mapping[str, str]) -> list[str]:
    lines = []
    for nodeid in sorted(set(expected) | set(actual)):
        want, got = expected.get(nodeid, "(absent)"), actual.get(nodeid, "(absent)")
        if want != got:
            lines.append(f"{nodeid}: pytest {want}, engine {got}")
    return lines

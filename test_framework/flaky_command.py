"""`python -m test_framework flaky`: which tests flaked in the project's recent runs, and how often.

A read-only look at the results store (store/readonly.py), found exactly as a run finds it (the
same `--project-root`, `--cache-dir`, `OPTIMIZED_TEST_CACHE_DIR` and pyproject layers). Errors
are raised as TestFrameworkError for `cli.py` to map to an exit code: a bad option is 4, an
unreadable store 3.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

import anyio

from .arguments import CommandParser, add_project_options, positive_int
from .exit_codes import ExitCode
from .request import RunRequest, resolve
from .store.flakiness import FlakyTest, count_recent_runs, flaky_tests
from .store.readonly import read_only

DEFAULT_LAST_RUNS = 50


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a rate from 0 to 1, got {text!r}") from None
    if not 0 <= value <= 1:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be from 0 to 1 (0.25 is 25%), got {text}")
    return value


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = CommandParser(
        prog=f"{prog} flaky",
        description="Show the tests that failed and then passed on a retry in the project's "
        "recent runs, with their flake rate (flaky runs / runs the test ran in).",
    )
    add = parser.add_argument
    add_project_options(parser, "the project whose runs to examine")
    add(
        "--last",
        type=positive_int,
        default=DEFAULT_LAST_RUNS,
        metavar="N",
        help=f"examine the project's last N runs (default: {DEFAULT_LAST_RUNS})",
    )
    add(
        "--min-rate",
        type=_rate,
        default=0.0,
        metavar="RATE",
        help="show only tests whose flake rate is at least RATE, from 0 to 1 (default: 0)",
    )
    add("--format", choices=("table", "json"), default="table", help="output (default: table)")
    return parser


async def _read(store: Path, project: str, last: int) -> tuple[int, list[FlakyTest]]:
    async with read_only(store) as db:
        if db is None:
            return 0, []
        return await count_recent_runs(db, project, last), await flaky_tests(db, project, last)


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def _print_table(out: TextIO, runs: int, tests: Sequence[FlakyTest], min_rate: float) -> None:
    shown = [t for t in tests if t.flake_rate >= min_rate]
    if not tests:
        print(f"no flaky tests in the last {_plural(runs, 'run')}", file=out)
        return
    if not shown:
        print(
            f"no test flaky in {min_rate:.1%} or more of the last {_plural(runs, 'run')}"
            f" ({_plural(len(tests), 'flaky test')} below that)",
            file=out,
        )
        return
    print(
        f"{_plural(len(shown), 'flaky test')} in the last {_plural(runs, 'run')} examined"
        " (flake rate = runs flaky / runs the test ran in):",
        file=out,
    )
    for test in shown:
        print(
            f"  {test.flake_rate:6.1%}  {test.flaky_runs}/{test.runs} runs flaky"
            f"  ({_plural(test.failed_attempts, 'failed attempt')})  {test.nodeid}",
            file=out,
        )


def _print_json(out: TextIO, runs: int, tests: Sequence[FlakyTest]) -> None:
    document = {
        "runs_examined": runs,
        "tests": [
            {
                "nodeid": t.nodeid,
                "runs": t.runs,
                "flaky_runs": t.flaky_runs,
                "failed_runs": t.failed_runs,
                "failed_attempts": t.failed_attempts,
                "flake_rate": t.flake_rate,
                "last_flaky_at": t.last_flaky_at,
            }
            for t in tests
        ],
    }
    json.dump(document, out, indent=2)
    out.write("\n")


def main(argv: Sequence[str], prog: str) -> int:
    """Print the report and return 0; raises UsageError (4) or StoreError (3) for cli.py."""
    ns = build_parser(prog).parse_args(list(argv))
    settings = resolve(RunRequest(project_root=ns.project_root, cache_dir=ns.cache_dir))
    store = settings.store_path
    project = str(settings.project_root)
    as_json = ns.format == "json"
    if store.is_file():
        runs, tests = anyio.run(_read, store, project, ns.last, backend="asyncio")
        empty = f"no runs of {project} in the results store at {store}: nothing has run yet"
    else:
        runs, tests = 0, []
        empty = f"no results store at {store}: nothing has run yet"
    if runs == 0:
        # With --format json stdout stays a document a script can parse; the words go to stderr.
        print(empty, file=sys.stderr if as_json else sys.stdout)
        if not as_json:
            return int(ExitCode.OK)
    if as_json:
        _print_json(sys.stdout, runs, [t for t in tests if t.flake_rate >= ns.min_rate])
    else:
        _print_table(sys.stdout, runs, tests, ns.min_rate)
    return int(ExitCode.OK)

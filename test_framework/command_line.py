"""The run's command line: the engine's own options, and the rest for pytest.

Apart from cli.py so the thin client (daemon/client.py) can split a command line as the engine
does, with argparse and the config's names only: where the project's root is depends on the
paths among pytest's arguments, never on an engine option's value (`--cache-dir DIR`).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from .arguments import (
    CommandParser,
    add_project_options,
    non_negative_int,
    positive_int,
    ratio_above_one,
    seconds,
)
from .config import CATEGORY_NAMES, PROFILE_NAMES

PROG = "test_framework"
# `--trace PATH.json` is the engine's trace file; pytest's `--trace` (the debugger) takes no
# value, so the two are told apart by the value's suffix.
TRACE_OPTION = "--trace-json"


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    parser = CommandParser(
        prog=prog,
        description="Run a project's pytest suite in parallel worker processes, "
        "longest tests first, with results kept in SQLite.",
        epilog="pytest's own options and paths (-k, -m, -p, -W, -r, --durations, paths, node "
        "ids, ...) are passed to pytest; after `--`, everything is. -x and --maxfail stop the "
        "whole run; --pdb, --trace, -s and --collect-only run pytest in the foreground. "
        "`%(prog)s flaky --help`: flake rates of the project's tests from the results store. "
        "`%(prog)s audit [options]`: run the selection the engine's way and in plain pytest's "
        "serial order, list every test whose outcome differs and the earlier tests behind it.",
    )
    add = parser.add_argument
    add(
        "--category",
        action="append",
        metavar="NAME",
        default=[],
        help=f"which tests: {', '.join(CATEGORY_NAMES)} or a project category; repeatable "
        "(default: the project's default_categories, else all)",
    )
    add(
        "--optimization",
        metavar="PROFILE",
        help=f"profile: {', '.join(PROFILE_NAMES)} or a project profile (default: balanced)",
    )
    add(
        "--workers",
        type=positive_int,
        metavar="N",
        help="fixed number of worker slots (default: adaptive, from CPU and memory)",
    )
    add_project_options(parser, "the project whose suite runs")
    add(
        "--maxfail",
        type=non_negative_int,
        metavar="N",
        help="stop the run after N failing tests, counted run-wide as they fail (before "
        "retries); the rest are reported as not run (0: never)",
    )
    add(
        "-x",
        "--exitfirst",
        action="store_const",
        const=1,
        dest="maxfail",
        help="stop the run at the first failing test (--maxfail 1)",
    )
    add(
        "--timeout",
        type=seconds,
        metavar="SECONDS",
        help="per-test timeout: a test running longer is killed and reported (0: never)",
    )
    add(
        "--session-timeout",
        type=seconds,
        metavar="SECONDS",
        help="end the whole run after this long: running tests are reported as timed out, "
        "the rest as not run, every report is still written (0: never)",
    )
    add(
        "--memory-limit",
        type=non_negative_int,
        metavar="MB",
        help="kill a worker whose RSS (with its children) passes MB and report the test "
        "that was running as the culprit (0: no limit; default: the profile's)",
    )
    add(
        "--breaker-threshold",
        type=non_negative_int,
        metavar="N",
        help="after N failures with one error signature and a probe that fails the same way, "
        "skip the rest of the affected files with that reason (0: off; default: the profile's)",
    )
    add(
        "--retries",
        type=non_negative_int,
        metavar="N",
        help="run a failing test again up to N times in a fresh process (default: profile's)",
    )
    add(
        "--flaky-result",
        choices=("pass", "fail"),
        default="pass",
        help="what a test that failed and then passed on a retry means for the exit code "
        "(default: pass; it is reported as flaky either way)",
    )
    add(
        "--isolation",
        choices=("fork", "spawn"),
        help="fork shards from a warm zygote (fast) or spawn a fresh interpreter each "
        "(default: the profile's; spawn where fork is unavailable)",
    )
    add(
        "--list",
        action="store_true",
        dest="list_only",
        help="show the plan (tests, shards, expected durations) and run nothing",
    )
    add("--report", type=Path, metavar="PATH", help="write a JSON report")
    add("--junitxml", type=Path, metavar="PATH", help="write a JUnit XML report")
    add(
        "--time-budget",
        metavar="DURATION",
        help="run what fits in DURATION (30s, 2m): the tests --changed affects first, then "
        "recently failed ones, then the fastest; the rest are reported not run (and do not "
        "fail the run)",
    )
    add(
        "--performance-regression",
        action="store_true",
        help="name the tests that took much longer than their median over recent runs "
        "(passed tests with 3+ past runs that grew past --perf-threshold times it and by "
        "0.1s or more)",
    )
    add(
        "--perf-threshold",
        type=ratio_above_one,
        default=None,
        metavar="X",
        help="with --performance-regression: how many times its median a test must take "
        "(default: 2.0)",
    )
    add(
        "--fail-on-regression",
        action="store_true",
        help="with --performance-regression: a regression fails the run (exit 1)",
    )
    add(
        "--executor",
        choices=("local", "dask"),
        default=None,
        help="where shards run: this machine (default) or a Dask cluster (--scheduler; "
        "without one, a local cluster of processes)",
    )
    add(
        "--scheduler",
        metavar="ADDRESS",
        help="with --executor dask: the scheduler (tcp://HOST:8786; default "
        "OPTIMIZED_TEST_DASK_SCHEDULER, else a local cluster)",
    )
    add(
        "--dask-upload",
        action="store_true",
        default=None,
        help="with --executor dask: send the project tree to the workers as an archive "
        "(tests included) instead of relying on the same path there "
        "(OPTIMIZED_TEST_DASK_UPLOAD)",
    )
    add(
        "--shard",
        metavar="K/N",
        help="run part K of N (CI jobs on several machines): the selection split by stored "
        "durations, the same split on every machine given the same store",
    )
    add(
        "--html",
        type=Path,
        metavar="PATH",
        help="write a self-contained HTML report: summary, failures, a timeline of the "
        "workers, the slowest tests, durations, flaky tests",
    )
    add(
        TRACE_OPTION,
        type=Path,
        dest="trace",
        metavar="PATH.json",
        help="(written --trace PATH.json) write the run as Chrome trace events, for Perfetto "
        "or chrome://tracing; a bare --trace is pytest's debugger",
    )
    add(
        "--no-cache",
        action="store_true",
        help="ignore cached collections and results: collect and run everything afresh "
        "(results are still recorded)",
    )
    add(
        "--changed",
        nargs="?",
        const="HEAD",
        default=None,
        metavar="REF",
        help="run only the tests the changes since REF (default HEAD; staged, unstaged and "
        "untracked files) can affect, through the recorded dependencies; a changed file no "
        "test is known to depend on runs everything",
    )
    add(
        "--changed-lenient",
        action="store_true",
        help="with --changed: a changed file no test is known to depend on runs nothing",
    )
    add(
        "--skip-cache",
        action="store_true",
        help="turn the skip cache on for this run (the profile key skip_cache): a test file "
        "unchanged since it passed reports its recorded outcomes as cached",
    )
    add(
        "--verify-cache",
        action="store_true",
        help="with the skip cache on: run everything, and name each test it would have "
        "reported whose outcome differed (a false skip; exit 1 if any)",
    )
    add("--clear-cache", action="store_true", help="delete the results store before running")
    add(
        "--resident",
        action="store_const",
        const=True,
        default=None,
        help="run through a warm process kept between runs, starting it if needed (default: "
        "the profile's; on in ultra_fast and aggressive, never in CI unless asked)",
    )
    add(
        "--no-resident",
        action="store_const",
        const=False,
        dest="resident",
        help="start everything afresh for this run; leave any resident process alone",
    )
    add(
        "--watch",
        action="store_true",
        help="stay up: on each saved change, rerun the tests it can affect (failed first) on "
        "a warm process; Ctrl-C ends it",
    )
    add(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="one line per test; -vv adds the engine's debug log",
    )
    add(
        "--log-format",
        choices=("console", "json"),
        help="format of the engine's own log on stderr (default: console on a terminal)",
    )
    return parser


# The engine's own short options, and pytest's that take a value (in `-rA` the rest is it).
_ENGINE_SHORT = frozenset("vx")
_SHORT_WITH_VALUE = frozenset("kmcpoWrn")


def split_short_cluster(arg: str) -> list[str]:
    """A pytest user's cluster of short options (`-vs`, `-xvs`, `-vrA`) that holds one of the
    engine's, as separate options, so the engine takes its own and pytest gets the rest."""
    if arg.startswith("--") or not arg.startswith("-") or len(arg) < 3:
        return [arg]
    letters = arg[1:]
    if not letters.isalpha() or not _ENGINE_SHORT & set(letters):
        return [arg]
    pieces: list[str] = []
    for index, letter in enumerate(letters):
        if letter in _SHORT_WITH_VALUE:
            pieces.append(f"-{letters[index:]}")
            break
        pieces.append(f"-{letter}")
    return pieces


def split_command_line(
    argv: Sequence[str], prog: str = PROG
) -> tuple[argparse.ArgumentParser, argparse.Namespace, list[str], list[str]]:
    """A run's command line taken apart: the engine's parser, the options it took, what it did
    not take, and everything after `--` (pytest's, untouched)."""
    args = list(argv)
    after: list[str] = []
    if "--" in args:
        cut = args.index("--")
        args, after = args[:cut], args[cut + 1 :]
    if args and args[0] == "run":
        args = args[1:]
    args = _engine_trace([piece for arg in args for piece in split_short_cluster(arg)])
    parser = build_parser(prog)
    ns, passed_on = parser.parse_known_args(args)
    return parser, ns, passed_on, after


def _engine_trace(args: list[str]) -> list[str]:
    """`--trace PATH.json` and `--trace=PATH` as the engine's trace option; a bare `--trace`
    stays pytest's."""
    out: list[str] = []
    index = 0
    while index < len(args):
        arg = args[index]
        if arg.startswith("--trace="):
            out += [TRACE_OPTION, arg.partition("=")[2]]
        elif arg == "--trace" and index + 1 < len(args) and args[index + 1].endswith(".json"):
            out += [TRACE_OPTION, args[index + 1]]
            index += 1
        else:
            out.append(arg)
        index += 1
    return out


def pytest_arguments(argv: Sequence[str], prog: str = PROG) -> list[str]:
    """What of a run's command line goes to pytest."""
    _, _, passed_on, after = split_command_line(argv, prog)
    return [*passed_on, *after]

"""`history`, `slowest [N]` and `stats NODEID`: a project's past runs and tests, from its store.

    python -m test_framework history [--last N] [--format json]
    python -m test_framework slowest [N] [--format json]
    python -m test_framework stats tests/test_x.py::test_y [--last N] [--format json]

Read-only, like `flaky` (store/readonly.py); they take `--project-root` and `--cache-dir` as a
run does, so they read the store the runs wrote. With `--format json` stdout is a document a
script can parse; words about an empty store go to stderr.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import anyio

from .arguments import CommandParser, add_project_options, positive_int
from .errors import UsageError
from .exit_codes import ExitCode
from .outcomes import summary_words
from .request import RunRequest, resolve
from .store.history import PastRun, recent_runs, runs_of_test, slowest_tests
from .store.readonly import read_only

COMMANDS = ("history", "slowest", "stats")
DEFAULT_LAST = 20


def build_parser(prog: str, command: str) -> CommandParser:
    descriptions = {
        "history": "The project's recent runs: when, wall time, counts, exit code, and the "
        "trend of the wall time.",
        "slowest": "The project's slowest tests by their typical duration (the store's running "
        "estimate, which planning uses).",
        "stats": "One test's record over the project's recent runs: outcomes, durations, attempts.",
    }
    parser = CommandParser(prog=f"{prog} {command}", description=descriptions[command])
    add_project_options(parser, "the project whose runs to examine")
    if command == "slowest":
        parser.add_argument("count", nargs="?", type=positive_int, default=20, metavar="N")
    if command == "stats":
        parser.add_argument("nodeid", metavar="NODEID")
    if command in ("history", "stats"):
        parser.add_argument(
            "--last",
            type=positive_int,
            default=DEFAULT_LAST,
            metavar="N",
            help=f"the project's last N runs (default: {DEFAULT_LAST})",
        )
    parser.add_argument("--format", choices=("table", "json"), default="table")
    return parser


def main(command: str, argv: Sequence[str], prog: str) -> int:
    ns = build_parser(prog, command).parse_args(list(argv))
    settings = resolve(RunRequest(project_root=ns.project_root, cache_dir=ns.cache_dir))
    store, project = settings.store_path, str(settings.project_root)
    as_json = ns.format == "json"
    if not store.is_file():
        print(f"no results store at {store}: nothing has run yet", file=sys.stderr)
        if as_json:
            print(json.dumps({"runs": [], "tests": []}))
        return int(ExitCode.OK)
    data = anyio.run(_read, command, ns, store, project, backend="asyncio")
    if as_json:
        json.dump(data, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return int(ExitCode.OK)
    _print(command, data, ns, project)
    return int(ExitCode.OK)


async def _read(command: str, ns: Any, store: Path, project: str) -> dict[str, Any]:
    async with read_only(store) as db:
        if db is None:
            return {"runs": [], "tests": []}
        if command == "history":
            runs = await recent_runs(db, project, ns.last)
            return {"runs": [asdict(r) for r in runs], "trend": trend(runs)}
        if command == "slowest":
            return {"tests": [asdict(t) for t in await slowest_tests(db, project, ns.count)]}
        runs_of = await runs_of_test(db, project, ns.nodeid, ns.last)
        if not runs_of:
            raise UsageError(
                f"no test {ns.nodeid!r} in the last {ns.last} runs of {project} "
                f"(node ids as pytest prints them: path/to/test_file.py::test_name)"
            )
        durations = [r.duration for r in runs_of if r.outcome not in ("cached", "not_run")]
        outcomes: dict[str, int] = {}
        for r in runs_of:
            outcomes[r.outcome] = outcomes.get(r.outcome, 0) + 1
        return {
            "nodeid": ns.nodeid,
            "runs": [asdict(r) for r in runs_of],
            "outcomes": outcomes,
            "median": statistics.median(durations) if durations else None,
            "min": min(durations, default=None),
            "max": max(durations, default=None),
        }


def trend(runs: Sequence[PastRun]) -> float | None:
    """The latest wall time over the median of the ones before it (1.2: 20 % slower)."""
    walls = [r.duration for r in runs if r.duration and not r.interrupted]
    if len(walls) < 3:
        return None
    return round(walls[0] / statistics.median(walls[1:]), 3)


def _print(command: str, data: dict[str, Any], ns: Any, project: str) -> None:
    out = sys.stdout
    if command == "history":
        runs = data["runs"]
        if not runs:
            print(f"no runs of {project} in the store yet", file=out)
            return
        print(f"last {len(runs)} runs of {project} (newest first):", file=out)
        for run in runs:
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(run["started_at"]))
            wall = "   -   " if run["duration"] is None else f"{run['duration']:7.2f}s"
            code = "?" if run["exit_code"] is None else str(run["exit_code"])
            words = ", ".join(summary_words(run["counts"])) or "no tests"
            print(f"  {when}  {wall}  exit {code}  {run['run_id']}  {words}", file=out)
        if data["trend"] is not None:
            print(f"trend: the latest run took {data['trend']:.2f}x the median before it", file=out)
    elif command == "slowest":
        tests = data["tests"]
        if not tests:
            print(f"no tests of {project} in the store yet", file=out)
            return
        print(f"{len(tests)} slowest tests of {project} (typical duration, runs):", file=out)
        for test in tests:
            print(f"  {test['typical']:8.3f}s  {test['runs']:4} runs  {test['nodeid']}", file=out)
    else:
        print(f"{data['nodeid']} in the last {len(data['runs'])} runs it ran in:", file=out)
        counts = ", ".join(f"{n} {word}" for word, n in data["outcomes"].items())
        print(f"  outcomes: {counts}", file=out)
        if data["median"] is not None:
            print(
                f"  duration: median {data['median']:.3f}s, min {data['min']:.3f}s, "
                f"max {data['max']:.3f}s",
                file=out,
            )
        for run in data["runs"]:
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(run["started_at"]))
            tries = f" (attempt {run['attempts']})" if run["attempts"] > 1 else ""
            print(f"  {when}  {run['outcome']:<8} {run['duration']:8.3f}s{tries}", file=out)

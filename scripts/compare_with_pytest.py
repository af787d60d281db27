#!/usr/bin/env python
"""Check that the engine reports exactly what plain pytest reports for a suite.

    python scripts/compare_with_pytest.py --suite DIR [--python PY] [--warm] [engine options]
        [-- pytest args]

Runs plain serial pytest (its own defaults, a recording plugin: linear in tests) and the engine
on the same selection, compares every node id's outcome and the exit codes, prints the
differences, and exits 0 when there are none (1 otherwise). Options the script does not know
are the engine's (`--optimization ultra_fast`, `--isolation spawn`, ...); `--warm` runs the
engine twice on one store and compares both runs, the second from the cached collection and
the durations the first recorded.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from test_framework.oracle import (
    OracleRun,
    differences,
    run_engine,
    run_pytest,
    split_pytest_args,
)


def main() -> int:
    argv, pytest_args = split_pytest_args(sys.argv[1:])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1], allow_abbrev=False)
    parser.add_argument("--suite", type=Path, required=True, help="the project folder")
    parser.add_argument("--python", default=sys.executable, help="interpreter of the suite")
    parser.add_argument(
        "--warm", action="store_true", help="run the engine twice on one store; compare both"
    )
    parser.add_argument(
        "--engine-arg",
        action="append",
        default=[],
        help="an engine option (repeatable; the engine's options may also be given directly)",
    )
    ns, engine_options = parser.parse_known_args(argv)
    root = ns.suite.resolve()
    plain = run_pytest(ns.python, root, pytest_args)
    engine_args = ["--retries", "0", *ns.engine_arg, *engine_options]
    print(f"pytest: {len(plain.outcomes)} tests, exit {plain.exit_code}")
    same = True
    with tempfile.TemporaryDirectory() as scratch:
        runs = ("cold", "warm") if ns.warm else ("cold",)
        for name in runs:
            engine = run_engine(
                ns.python, root, pytest_args, engine_args, cache_dir=Path(scratch) / "cache"
            )
            same = _compare(name, plain, engine) and same
    print("SAME outcomes and exit code" if same else "DIFFERENT")
    return 0 if same else 1


def _compare(name: str, plain: OracleRun, engine: OracleRun) -> bool:
    diff = differences(plain.outcomes, engine.outcomes)
    print(f"engine ({name}): {len(engine.outcomes)} tests, exit {engine.exit_code}")
    for line in diff:
        print(f"  {line}")
    if not engine.outcomes and plain.outcomes:
        print(engine.output[-3000:])
    return not diff and plain.exit_code == engine.exit_code


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python
"""Check that the engine reports exactly what plain pytest reports for a suite.

    python scripts/compare_with_pytest.py --suite DIR [--python PY] [-- pytest args]

Runs plain serial pytest and the engine on the same selection, compares every node id's outcome,
prints the differences, and exits 0 when there are none (1 otherwise).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from test_framework.oracle import differences, run_engine, run_pytest


def main() -> int:
    argv = sys.argv[1:]
    pytest_args: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, pytest_args = argv[:cut], argv[cut + 1 :]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--suite", type=Path, required=True, help="the project folder")
    parser.add_argument("--python", default=sys.executable, help="interpreter of the suite")
    parser.add_argument(
        "--engine-arg", action="append", default=[], help="extra engine option (repeatable)"
    )
    ns = parser.parse_args(argv)
    root = ns.suite.resolve()
    plain = run_pytest(ns.python, root, pytest_args)
    engine = run_engine(ns.python, root, pytest_args, ["--retries", "0", *ns.engine_arg])
    diff = differences(plain.outcomes, engine.outcomes)
    print(
        f"pytest: {len(plain.outcomes)} tests, exit {plain.exit_code}; "
        f"engine: {len(engine.outcomes)} tests, exit {engine.exit_code}"
    )
    for line in diff:
        print(f"  {line}")
    if not engine.outcomes:
        print(engine.output[-3000:])
    same = not diff and plain.exit_code == engine.exit_code
    print("SAME outcomes and exit code" if same else "DIFFERENT")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python
"""Count the skip cache's false skips on a suite, one mutation at a time.

    python scripts/check_cache_soundness.py --suite DIR [--python PY] [--limit N]
        [-- pytest args]

Works on a copy of the suite, with `skip_cache = true` and no trip-wire sample, so the decision
alone is judged. After a baseline run records every file, each mutation is applied in turn,
the engine runs on the store the baseline left, plain pytest runs on the same mutated tree,
and the mutation is undone (and recorded again, so each mutation starts from the baseline).
The mutations are:
- every function and method of each non-test Python module, conftests included, raising at
  its start: the tests that use them now fail;
- every data file a recorded test read, with its content changed.

A false skip is a test the engine reported `cached` whose outcome under pytest is no longer
the recorded one. Each mutation's line also says how many test files ran, as a measure of
precision. Exits 1 on any false skip.
"""

from __future__ import annotations

import argparse
import ast
import fnmatch
import json
import os
import shutil
import sqlite3
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from test_framework.fingerprint import SKIP_DIRS
from test_framework.oracle import run_engine, run_pytest, split_pytest_args

MARK = "raise RuntimeError('mutated by check_cache_soundness')"
TEST_PATTERNS = ("test_*.py", "*_test.py")
CONFIG = "\n[tool.test_framework.profiles.balanced]\nskip_cache = true\ncache_sample = 0.0\n"


def sources(root: Path) -> list[Path]:
    found = []
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).parts
        if any(p in SKIP_DIRS or p.startswith(".") or p.endswith(".egg-info") for p in parts):
            continue
        if any(fnmatch.fnmatch(path.name, pattern) for pattern in TEST_PATTERNS):
            continue
        found.append(path)
    return found


def broken(source: str) -> str | None:
    """The module with every function raising at its start (None: it has none)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None
    changed = False
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            first = node.body[0] if node.body else None
            docstring = (
                isinstance(first, ast.Expr)
                and isinstance(first.value, ast.Constant)
                and isinstance(first.value.value, str)
            )
            node.body.insert(1 if docstring else 0, ast.parse(MARK).body[0])
            changed = True
    return ast.unparse(tree) + "\n" if changed else None


def data_files(store: Path, root: Path) -> list[Path]:
    with sqlite3.connect(store) as db:
        rows = db.execute("SELECT dependencies FROM file_records").fetchall()
    paths = {p for (deps,) in rows for p in json.loads(deps)}
    return sorted(
        root / p
        for p in paths
        if not p.endswith(("/", ".py", ".toml", ".ini", ".cfg")) and (root / p).is_file()
    )


def main() -> int:
    argv, pytest_args = split_pytest_args(sys.argv[1:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--suite", type=Path, required=True)
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--limit", type=int, default=0, help="at most this many mutations")
    options = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="soundness-") as scratch:
        root = Path(scratch) / "suite"
        shutil.copytree(options.suite, root, ignore=shutil.ignore_patterns(".test_framework"))
        pyproject = root / "pyproject.toml"
        pyproject.write_text(
            (pyproject.read_text() if pyproject.exists() else "") + CONFIG, encoding="utf-8"
        )
        if (root / "src").is_dir():
            # A suite installed in develop mode imports its original folder: the copy's `src/`
            # must come first, or no mutation would reach the tests.
            os.environ["PYTHONPATH"] = os.pathsep.join(
                filter(None, [str(root / "src"), os.environ.get("PYTHONPATH")])
            )
        store = Path(scratch) / "store"
        engine_args = ("--retries", "0", "--optimization", "balanced")

        def engine() -> dict[str, str]:
            return run_engine(
                options.python, root, pytest_args, engine_args, cache_dir=store
            ).outcomes

        baseline = engine()
        again = engine()
        print(
            f"baseline: {len(baseline)} tests; a second run reports "
            f"{sum(o == 'cached' for o in again.values())} cached"
        )
        mutations: list[tuple[Path, str]] = []
        for path in sources(root):
            text = broken(path.read_text(encoding="utf-8"))
            if text is not None:
                mutations.append((path, text))
        for path in data_files(store / "results.sqlite", root):
            mutations.append((path, path.read_text(errors="replace") + "\nmutated\n"))
        if options.limit:
            mutations = mutations[: options.limit]
        false_total = 0
        for path, mutated in mutations:
            original = path.read_bytes()
            path.write_text(mutated, encoding="utf-8")
            try:
                ours = engine()
                theirs = run_pytest(options.python, root, pytest_args).outcomes
            finally:
                path.write_bytes(original)
                engine()  # re-record the restored tree: the next mutation starts from it
            false = [
                n for n, o in ours.items() if o == "cached" and theirs.get(n) != baseline.get(n)
            ]
            false_total += len(false)
            changed = sum(theirs.get(n) != o for n, o in baseline.items())
            files = {n.split("::")[0] for n in ours}
            ran = {n.split("::")[0] for n, o in ours.items() if o != "cached"}
            print(
                f"{path.relative_to(root)}: {changed} tests change outcome under pytest; "
                f"{len(ran)} of {len(files)} test files ran; false skips: {len(false)}"
                + "".join(f"\n    FALSE SKIP {n}" for n in false[:5])
            )
        print(f"{len(mutations)} mutations, {false_total} false skips")
        return 1 if false_total else 0


if __name__ == "__main__":
    raise SystemExit(main())

#!/usr/bin/env python
"""Generate reproducible synthetic pytest suites for the benchmark.

    python scripts/generate_suite.py KIND DEST [--tests N] [--seed S]

KIND:
  cpu      tests that keep a core busy (a hash loop of ~0.1 s each)
  io       tests that wait: sleeps and socket reads with a timeout (~0.2 s each, no CPU)
  imports  test files importing generated modules that cost 0.2-0.5 s each to import
  mixed    a third of each of the above
  large    many tiny tests (default 10,000; pass --tests 50000 for the big one)

The same KIND, N and seed always give the same files. Each suite has its own pytest.ini, a
`tests/unit/` folder (so `--category unit` selects it) and `filterwarnings = error`.
"""

from __future__ import annotations

import argparse
import random
import shutil
import textwrap
from pathlib import Path

KINDS = ("cpu", "io", "imports", "mixed", "large")
DEFAULT_TESTS = {"cpu": 40, "io": 60, "imports": 40, "mixed": 60, "large": 10_000}

PYTEST_INI = """\
[pytest]
testpaths = tests
filterwarnings = error
addopts = --strict-markers
"""

CPU_TEST = """
def test_cpu_{index}():
    digest = b"{index}"
    for _ in range({rounds}):
        digest = hashlib.sha256(digest).digest()
    assert len(digest) == 32
"""

SLEEP_TEST = """
def test_sleep_{index}():
    time.sleep({seconds})
"""

SOCKET_TEST = """
def test_socket_wait_{index}():
    left, right = socket.socketpair()
    with left, right:
        right.settimeout({seconds})
        try:
            right.recv(1)
        except TimeoutError:
            pass
"""

IMPORT_MODULE = '''
"""Generated: costs about {seconds} s of CPU to import, like a heavy real dependency."""
import hashlib

_digest = b"{name}"
for _ in range({rounds}):
    _digest = hashlib.sha256(_digest).digest()
VALUE = _digest.hex()
'''


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")


def _cpu(dest: Path, tests: int, rng: random.Random, prefix: str = "cpu") -> None:
    per_file = 5
    for f in range(0, tests, per_file):
        body = "import hashlib\n" + "".join(
            CPU_TEST.format(index=i, rounds=rng.randint(120_000, 200_000))
            for i in range(f, min(f + per_file, tests))
        )
        _write(dest / "tests" / "unit" / f"test_{prefix}_{f // per_file:03d}.py", body)


def _io(dest: Path, tests: int, rng: random.Random, prefix: str = "io") -> None:
    per_file = 5
    for f in range(0, tests, per_file):
        parts = ["import socket\nimport time\n"]
        for i in range(f, min(f + per_file, tests)):
            seconds = round(rng.uniform(0.1, 0.3), 3)
            template = SLEEP_TEST if i % 2 == 0 else SOCKET_TEST
            parts.append(template.format(index=i, seconds=seconds))
        _write(dest / "tests" / "unit" / f"test_{prefix}_{f // per_file:03d}.py", "".join(parts))


def _imports(dest: Path, tests: int, rng: random.Random, prefix: str = "imp") -> None:
    modules = 8
    _write(dest / "heavy" / "__init__.py", "")
    for m in range(modules):
        seconds = round(rng.uniform(0.2, 0.5), 2)
        # ~1.5 M sha256 rounds per second on this machine's class of core
        _write(
            dest / "heavy" / f"mod_{m}.py",
            IMPORT_MODULE.format(seconds=seconds, name=m, rounds=int(seconds * 1_000_000)),
        )
    _write(dest / "conftest.py", "import sys, os\nsys.path.insert(0, os.path.dirname(__file__))\n")
    per_file = 4
    for f in range(0, tests, per_file):
        used = rng.sample(range(modules), 3)
        lines = [f"from heavy import mod_{m}\n" for m in used]
        for i in range(f, min(f + per_file, tests)):
            lines.append(f"\n\ndef test_{prefix}_{i}():\n    assert mod_{used[i % 3]}.VALUE\n")
        _write(dest / "tests" / "unit" / f"test_{prefix}_{f // per_file:03d}.py", "".join(lines))


def _large(dest: Path, tests: int, rng: random.Random) -> None:
    per_file = 100
    for f in range(0, tests, per_file):
        count = min(per_file, tests - f)
        body = (
            "import pytest\n\n\n"
            f"@pytest.mark.parametrize('n', range({count}))\n"
            "def test_tiny(n):\n    assert n >= 0\n"
        )
        _write(dest / "tests" / "unit" / f"test_large_{f // per_file:04d}.py", body)
    del rng


def generate(kind: str, dest: Path, tests: int, seed: int) -> None:
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    _write(dest / "pytest.ini", PYTEST_INI)
    rng = random.Random(f"{kind}-{tests}-{seed}")
    if kind == "cpu":
        _cpu(dest, tests, rng)
    elif kind == "io":
        _io(dest, tests, rng)
    elif kind == "imports":
        _imports(dest, tests, rng)
    elif kind == "mixed":
        third = tests // 3
        _cpu(dest, third, rng)
        _io(dest, third, rng)
        _imports(dest, tests - 2 * third, rng)
    elif kind == "large":
        _large(dest, tests, rng)


def main() -> None:
    parser = argparse.ArgumentParser(description="Generate a synthetic pytest suite.")
    parser.add_argument("kind", choices=KINDS)
    parser.add_argument("dest", type=Path)
    parser.add_argument("--tests", type=int, help="number of tests (default depends on kind)")
    parser.add_argument("--seed", type=int, default=0)
    ns = parser.parse_args()
    tests = ns.tests or DEFAULT_TESTS[ns.kind]
    generate(ns.kind, ns.dest, tests, ns.seed)
    print(f"{ns.kind} suite with {tests} tests in {ns.dest}")


if __name__ == "__main__":
    main()

"""pytest's records after a run of the engine are the ones plain pytest leaves: `lastfailed`
holds every failure of the run, from every worker (none of them writes it; the engine does, as
xdist's controller does), so `--lf` afterwards runs what failed; `nodeids` (for `--nf`) every
test seen."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

PROJECT = {
    "pytest.ini": "[pytest]\n",
    "test_a.py": "def test_a_ok():\n    pass\n\n\ndef test_a_bad():\n    assert 0\n",
    "test_b.py": "def test_b_ok():\n    pass\n\n\ndef test_b_bad():\n    assert 0\n",
    "test_c.py": "import pytest\n\n\n@pytest.mark.skip\ndef test_c_skip():\n    pass\n",
    "test_d.py": "import missing_module_here\n\n\ndef test_d():\n    pass\n",
}


def lastfailed(root: Path) -> dict[str, bool]:
    path = root / ".pytest_cache" / "v" / "cache" / "lastfailed"
    return json.loads(path.read_text()) if path.exists() else {}


def nodeids(root: Path) -> list[str]:
    found = json.loads((root / ".pytest_cache" / "v" / "cache" / "nodeids").read_text())
    return [str(nodeid) for nodeid in found]


def run(root: Path, *command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *command], cwd=root, capture_output=True, text=True, timeout=300
    )


ENGINE = ("test_framework", "--workers", "2", "--retries", "0", "--no-resident")


def both(roots: dict[str, Path], *args: str) -> tuple[str, str]:
    """The engine and plain pytest with the same arguments, each in its copy: both must exit
    1; their closing lines."""
    done = run(roots["engine"], *ENGINE, *args)
    plain = run(roots["pytest"], "pytest", *args)
    assert done.returncode == plain.returncode == 1, done.stdout + done.stderr
    return done.stdout.splitlines()[-1], plain.stdout.splitlines()[-1]


def records_agree(roots: dict[str, Path], expected: dict[str, bool]) -> None:
    """The engine's copy holds the records plain pytest's holds, and `lastfailed` is this."""
    assert lastfailed(roots["engine"]) == lastfailed(roots["pytest"]) == expected
    assert nodeids(roots["engine"]) == nodeids(roots["pytest"])


def test_the_record_holds_every_workers_failures_as_pytests_does(tmp_path: Path) -> None:
    roots = {}
    for who in ("engine", "pytest"):
        roots[who] = tmp_path / who
        for name, text in PROJECT.items():
            (roots[who] / name).parent.mkdir(parents=True, exist_ok=True)
            (roots[who] / name).write_text(text)
    # Earlier failures of tests that pass now are dropped; a test not run keeps its entry.
    stale = {"test_a.py::test_a_ok": True, "test_gone.py::test_x": True}
    for root in roots.values():
        (root / ".pytest_cache/v/cache").mkdir(parents=True)
        (root / ".pytest_cache/v/cache/lastfailed").write_text(json.dumps(stale))
    keep = "--continue-on-collection-errors"
    both(roots, keep)
    failed = {"test_a.py::test_a_bad": True, "test_b.py::test_b_bad": True}
    records_agree(roots, {**failed, "test_d.py": True, "test_gone.py::test_x": True})
    assert "test_b.py::test_b_ok" in nodeids(roots["engine"])
    # `--lf` runs what failed (the collection error again), and the record stays.
    engine_closing, pytest_closing = both(roots, "--lf", keep)
    assert "2 failed, 1 error" in engine_closing
    assert "2 failed, 1 error" in pytest_closing
    assert lastfailed(roots["engine"]) == lastfailed(roots["pytest"])
    # Fixed, the file that failed to collect is replaced by its tests, which pass.
    for root in roots.values():
        (root / "test_d.py").write_text("def test_d():\n    pass\n")
    both(roots)
    records_agree(roots, {**failed, "test_gone.py::test_x": True})

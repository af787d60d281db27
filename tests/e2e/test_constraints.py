"""Safe parallelism: `serial` tests run alone; tests sharing a `resource` never overlap."""

from __future__ import annotations

from pathlib import Path

import pytest

from .helpers import run_suite

pytestmark = pytest.mark.e2e


def intervals(log: Path) -> dict[str, tuple[float, float]]:
    found = {}
    for line in log.read_text(encoding="utf-8").splitlines():
        nodeid, start, end = line.split("\t")
        found[nodeid] = (float(start), float(end))
    return found


def overlap(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


@pytest.mark.parametrize("isolation", ["fork", "spawn"])
def test_serial_and_resource_tests_never_overlap(isolation: str, tmp_path: Path) -> None:
    log = tmp_path / "intervals.tsv"
    # Twice: the second run knows the durations, so the free tests are spread over shards.
    for _ in range(2):
        log.unlink(missing_ok=True)
        done, document = run_suite(
            "constraints",
            tmp_path,
            "--workers",
            "4",
            "--retries",
            "0",
            f"--isolation={isolation}",
            env={"CONSTRAINTS_LOG": str(log)},
        )
        assert done.returncode == 0, done.stdout + done.stderr
    tests = document["tests"]

    assert len(tests) == 14
    assert {t["outcome"] for t in tests} == {"passed"}
    ran = intervals(log)
    assert len(ran) == 14  # each test ran exactly once
    serial = [n for n in ran if "serial_" in n or "parallel_unsafe" in n]
    for nodeid in serial:
        for other in ran:
            if other != nodeid:
                assert not overlap(ran[nodeid], ran[other]), (nodeid, other)
    holders = {
        "db": [n for n in ran if "test_db_" in n],
        "port": [n for n in ran if n.endswith(("test_db_and_port", "test_port_only"))],
    }
    for name, ids in holders.items():
        for a in ids:
            for b in ids:
                if a < b:
                    assert not overlap(ran[a], ran[b]), (name, a, b)
    if isolation == "fork":
        # Forked shards are cheap, so the free tests (2 s in all) are spread over several and
        # overlap: the constraints did not serialise everything. (Spawn merges shards shorter
        # than a few process starts, so there they may legitimately share one worker.)
        free = [n for n in ran if "test_free[" in n]
        assert any(overlap(ran[a], ran[b]) for a in free for b in free if a < b)

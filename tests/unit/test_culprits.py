"""Delta debugging over the tests before one: the few it needs, with a scripted probe."""

from __future__ import annotations

import pytest

from test_framework.dispatch.culprits import describe, minimal_needs

pytestmark = pytest.mark.anyio

BEFORE = tuple(f"t.py::t{i}" for i in range(16))


def needing(*wanted: str) -> tuple[object, list[tuple[str, ...]]]:
    calls: list[tuple[str, ...]] = []

    async def probe(tests: tuple[str, ...]) -> bool:
        calls.append(tests)
        return set(wanted) <= set(tests)

    return probe, calls


async def test_finds_the_two_tests_that_must_run_first() -> None:
    probe, calls = needing("t.py::t3", "t.py::t11")
    found = await minimal_needs(BEFORE, probe, lambda: False)  # type: ignore[arg-type]
    assert sorted(found.tests) == ["t.py::t11", "t.py::t3"]
    assert found.complete
    assert found.probes == len(calls)


async def test_a_test_that_needs_no_earlier_test_says_so_in_one_probe() -> None:
    probe, calls = needing()
    found = await minimal_needs(BEFORE, probe, lambda: False)  # type: ignore[arg-type]
    assert (found.tests, found.probes, calls) == ((), 1, [()])
    assert "needs the whole collection" in describe("t.py::x", found)


async def test_a_siblings_answer_is_tried_first() -> None:
    probe, calls = needing("t.py::t0")
    found = await minimal_needs(BEFORE, probe, lambda: False, hint=("t.py::t0",))  # type: ignore[arg-type]
    assert found.tests == ("t.py::t0",)
    assert calls == [(), ("t.py::t0",)]


async def test_out_of_time_keeps_what_is_known_to_be_enough() -> None:
    probe, _ = needing("t.py::t3")
    found = await minimal_needs(BEFORE, probe, lambda: True)  # type: ignore[arg-type]
    assert (found.tests, found.complete) == (BEFORE, False)
    assert "ran out of time" in describe("t.py::x", found)

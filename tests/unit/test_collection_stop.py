"""pytest's rules for collection errors, applied by the engine to its whole collection."""

from __future__ import annotations

from test_framework.collection_stop import collection_stop
from test_framework.models import Collection, Terminal
from test_framework.worker.protocol import CollectFailed


def collection(*errors: CollectFailed, maxfail: int = 0, collectors: int = 10) -> Collection:
    return Collection(
        "/r",
        ("test_a.py::test_1",),
        errors,
        terminal=Terminal(maxfail=maxfail),
        collectors=collectors,
    )


BROKEN_THIRD = CollectFailed("test_b.py", "ImportError", collector=3)
BROKEN_LAST = CollectFailed("test_z.py", "ZeroDivisionError", collector=10)
SKIPPED = CollectFailed("test_s.py", "skipped", skipped=True, collector=5)


def test_an_error_interrupts_before_any_test() -> None:
    stop = collection_stop(collection(BROKEN_THIRD, BROKEN_LAST), ())
    assert stop is not None
    assert stop.reason == "Interrupted: 2 errors during collection"
    assert stop.interrupted
    assert stop.reported == (BROKEN_THIRD, BROKEN_LAST)


def test_continue_on_collection_errors_runs_the_tests() -> None:
    assert collection_stop(collection(BROKEN_THIRD), ("--continue-on-collection-errors",)) is None


def test_a_module_level_skip_is_no_error() -> None:
    assert collection_stop(collection(SKIPPED), ()) is None


def test_maxfail_stops_collecting_at_the_next_collector_after_the_nth_error() -> None:
    found = collection(BROKEN_THIRD, SKIPPED, BROKEN_LAST, maxfail=1)
    for args in ((), ("--continue-on-collection-errors",)):
        stop = collection_stop(found, args)
        assert stop is not None
        assert stop.reason == "stopping after 1 failures"
        assert not stop.interrupted  # pytest's exit 1, not 2
        assert stop.reported == (BROKEN_THIRD,)  # pytest never collected the later files


def test_an_nth_error_in_the_last_collector_lets_collection_finish_then_interrupts() -> None:
    stop = collection_stop(collection(BROKEN_THIRD, BROKEN_LAST, maxfail=2), ())
    assert stop is not None
    assert stop.interrupted
    assert stop.reason == "Interrupted: 2 errors during collection"


def test_fewer_errors_than_maxfail_follow_the_plain_rule() -> None:
    stop = collection_stop(collection(BROKEN_THIRD, maxfail=2), ())
    assert stop is not None
    assert stop.interrupted
    assert stop.reported == (BROKEN_THIRD,)

"""pytest's rules for a collection with errors, applied to the engine's whole collection.

Workers collect without `--maxfail` (and with `--continue-on-collection-errors`), so one broken
file never hides the others' tests from the engine; the engine then decides as pytest would
have: with `--maxfail N`, collection ends at the first collector pytest starts after the N-th
error ("stopping after N failures", exit 1, later files never seen); otherwise any error
interrupts the session before a test runs (exit 2), unless `--continue-on-collection-errors`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .models import Collection
from .worker.protocol import CollectFailed


@dataclass(frozen=True, slots=True)
class CollectionStop:
    reason: str
    interrupted: bool  # exit 2 (pytest's Interrupted) rather than 1 (its maxfail stop)
    reported: tuple[CollectFailed, ...]  # what pytest had collected, and reports, by then


def collection_stop(collection: Collection, pytest_args: Sequence[str]) -> CollectionStop | None:
    """Whether pytest would run no test at all, and what it would report. A module-level skip
    is no error."""
    errors = [e for e in collection.errors if not e.skipped]
    maxfail = collection.terminal.maxfail
    if maxfail and len(errors) >= maxfail:
        nth = errors[maxfail - 1]
        if nth.collector < collection.collectors:
            seen = tuple(e for e in collection.errors if e.collector <= nth.collector)
            return CollectionStop(f"stopping after {maxfail} failures", False, seen)
    if not errors or "--continue-on-collection-errors" in pytest_args:
        return None
    count = len(errors)
    return CollectionStop(
        f"Interrupted: {count} error{'s' if count > 1 else ''} during collection",
        True,
        collection.errors,
    )

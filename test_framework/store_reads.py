"""What earlier runs left in the results store that a run reads before it plans: durations
and recent failures, the files that need pytest's context, the files whose ids are unstable.

A store that cannot be opened or read is a warning and an empty answer, never a failure: the
run then plans as a cold one would. A file's learnt property holds only while the file is as
it was when it was learnt (its digest).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import aiosqlite
import structlog

from .errors import StoreError
from .fingerprint import input_digest
from .regressions import BASELINE_RUNS
from .request import RunSettings
from .store.connection import connect_store
from .store.history import baselines
from .store.queries import History, load_context_needs, load_history, load_unstable_ids

log = structlog.get_logger("test_framework")

T = TypeVar("T")


@dataclass
class StoreReads:
    settings: RunSettings
    warnings: list[str] = field(default_factory=list)  # what could not be opened or read

    async def open(self) -> aiosqlite.Connection | None:
        try:
            return await connect_store(self.settings.store_path)
        except StoreError as exc:
            self.warnings.append(str(exc))
            log.warning("store_unavailable", error=str(exc))
            return None

    async def history(self, db: aiosqlite.Connection | None) -> History:
        empty = History(durations={}, recent_failures=frozenset())
        return await self._read(db, load_history, "history", empty)

    async def context_files(self, db: aiosqlite.Connection | None) -> dict[str, str]:
        """Files an earlier run learnt need pytest's context, while they are unchanged."""
        none: dict[str, tuple[str, str]] = {}
        needs = await self._read(db, load_context_needs, "context needs", none)
        return {file: why for file, (why, digest) in needs.items() if self._unchanged(file, digest)}

    async def unstable_files(self, db: aiosqlite.Connection | None) -> set[str]:
        """Files an earlier run saw change their ids between collections, while unchanged."""
        none: dict[str, str] = {}
        seen = await self._read(db, load_unstable_ids, "unstable ids", none)
        return {file for file, digest in seen.items() if self._unchanged(file, digest)}

    async def baselines(
        self, db: aiosqlite.Connection | None, nodeids: Sequence[str]
    ) -> dict[str, tuple[float, int]]:
        """Each test's median passing duration over recent runs, and how many runs that is."""

        async def read(db: aiosqlite.Connection, project: str) -> dict[str, tuple[float, int]]:
            found = await baselines(db, project, nodeids, BASELINE_RUNS)
            return {nodeid: (b.median, b.runs) for nodeid, b in found.items()}

        return await self._read(db, read, "durations' history", {})

    async def _read(
        self,
        db: aiosqlite.Connection | None,
        query: Callable[[aiosqlite.Connection, str], Awaitable[T]],
        what: str,
        default: T,
    ) -> T:
        if db is None:
            return default
        try:
            return await query(db, str(self.settings.project_root))
        except Exception as exc:
            self.warnings.append(f"results store: cannot read {what}: {exc}")
            return default

    def _unchanged(self, file: str, digest: str) -> bool:
        return input_digest(self.settings.project_root, file) == digest

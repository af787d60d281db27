"""The collector: the run's collection from the cheapest honest source, as one record.

Sources, in order: the store's cache (a clean collection saved under a fingerprint of every
project file, the interpreter, pytest and the environment; never with `--no-cache`), what the
executor's warm process collected, else pytest's collection in a process of its own per query.
A clean collection is saved for the next run; one with errors never is, so errors are always
reported by a real collection. A store that cannot be read or written is a warning, not a
failure.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import aiosqlite
import structlog

from .discovery import CollectionQuery, pytest_argv, queries_for, worker_args
from .execution.collect import collect
from .execution.executor import ShardExecutor
from .fingerprint import collection_fingerprint, input_digests
from .models import Collection
from .request import RunSettings
from .store.queries import load_collection, save_collection

log = structlog.get_logger("test_framework")


@dataclass
class Collector:
    settings: RunSettings
    env: Mapping[str, str]
    db: aiosqlite.Connection | None
    warnings: list[str] = field(default_factory=list)
    _fingerprints: dict[CollectionQuery, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.queries = queries_for(self.settings.categories, self.settings.project_root)
        self._warm = self._warm_query()

    @property
    def cache(self) -> aiosqlite.Connection | None:
        """The store, when collections may be cached in it (not with --no-cache)."""
        return self.db if self.settings.profile.collection_cache else None

    def warm_query(self) -> CollectionQuery | None:
        """The one query a warm process collects: fork isolation with a single query (several
        queries are collected, and their shards spawned, one by one)."""
        return self._warm

    def _warm_query(self) -> CollectionQuery | None:
        if self.settings.isolation != "fork":
            return None
        if len(self.queries) != 1:
            log.info("fork_unavailable", reason="several collection queries; spawning")
            return None
        return self.queries[0]

    def warm_argv(self) -> tuple[str, ...] | None:
        query = self.warm_query()
        return None if query is None else pytest_argv(query, self.settings.pytest_args)

    async def cached_warm(self) -> Collection | None:
        """The warm query's cached collection: with it, the warm process forks before
        collecting and each worker collects only its own files."""
        query = self.warm_query()
        return None if query is None else await self._cached(query)

    async def collect(self, executor: ShardExecutor) -> Collection:
        """The executor's collection when its warm process made one, else pytest's per query;
        either way saved for the next run."""
        query = self.warm_query()
        if query is not None:
            warm = await executor.collected()
            if warm is not None:
                await self._save(query, warm)
                return warm
        return Collection.merged([await self._collect_one(q) for q in self.queries])

    def worker_args(self, collection: Collection) -> tuple[tuple[str, ...], bool]:
        """A spawned worker's pytest args, and whether shards must name their tests."""
        return worker_args(self.queries, self.settings.pytest_args, collection.positionals)

    async def _collect_one(self, query: CollectionQuery) -> Collection:
        hit = await self._cached(query)
        if hit is not None:
            return hit
        settings = self.settings
        found = await collect(
            pytest_argv(query, settings.pytest_args), cwd=settings.project_root, env=self.env
        )
        await self._save(query, found)
        return found

    def _fingerprint(self, query: CollectionQuery) -> str:
        """Computed once per query: it walks the project."""
        if query not in self._fingerprints:
            key = (*query.key(), *self.settings.pytest_args)
            self._fingerprints[query] = collection_fingerprint(
                self.settings.project_root, key, self.env
            )
        return self._fingerprints[query]

    async def _cached(self, query: CollectionQuery) -> Collection | None:
        """The cached collection, if the data files and folders it read are as they were."""
        if self.cache is None:
            return None
        try:
            hit = await load_collection(self.cache, self._fingerprint(query))
        except Exception as exc:
            self.warnings.append(f"results store: cannot read collection cache: {exc}")
            return None
        if hit is None:
            return None
        now = input_digests(self.settings.project_root, hit.read)
        changed = [path for path, digest in hit.read.items() if now[path] != digest]
        if changed:
            log.info("collection_cache_stale", changed=changed[:10])
            return None
        log.debug("collection_cache_hit", tests=len(hit.nodeids))
        return hit

    async def _save(self, query: CollectionQuery, found: Collection) -> None:
        if self.cache is None or not found.nodeids or found.errors:
            return
        digests = input_digests(self.settings.project_root, found.read)
        try:
            await save_collection(
                self.cache, self._fingerprint(query), replace(found, read=digests)
            )
        except Exception as exc:
            self.warnings.append(f"results store: cannot save collection: {exc}")

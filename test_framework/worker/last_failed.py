"""pytest's `--lf` record (`cache/lastfailed`) under the engine: one writer, the engine.

Each of the engine's pytest processes sees only part of the run: the zygote its collection, a
shard's worker its shard. pytest's own LFPlugin in each would write the record from its part
at its session's end, the last writer's part winning (one worker's failures would drop
another's), and a resident zygote would write its stale copy when it is finally closed. As
under pytest-xdist (whose workers write none, and whose controller writes the whole), the
workers keep LFPlugin for what it does while collecting (`--lf`, `--ff` select and order from
the record) and drop it before any test runs; the engine writes the record from the whole run
(reporting/last_failed.py), at the folder the collecting process reports here.
"""

from __future__ import annotations

import pytest


# Not named pytest_*: the worker plugin imports these, and pluggy takes such names for hooks.
def cache_folder_of(config: pytest.Config) -> str | None:
    """Where pytest keeps its cache for this session; None when the cacheprovider is off."""
    if not config.pluginmanager.has_plugin("cacheprovider"):
        return None
    cache = getattr(config, "cache", None)
    folder = getattr(cache, "_cachedir", None)
    return None if folder is None else str(folder)


def leave_last_failed_to_engine(config: pytest.Config) -> None:
    """Drop pytest's LFPlugin from this process once collection is over."""
    manager = config.pluginmanager
    plugin = manager.getplugin("lfplugin")
    if plugin is not None:
        manager.unregister(plugin)

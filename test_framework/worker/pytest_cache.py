"""pytest's records for `--lf`/`--ff` (`cache/lastfailed`) and `--nf` (`cache/nodeids`) under
the engine: one writer, the engine.

Each of the engine's pytest processes sees only part of the run: the zygote its collection, a
shard's worker its shard. pytest's own LFPlugin in each would write the failures record from
its part at its session's end, the last writer's part winning (one worker's failures would
drop another's), and a resident zygote would write its stale copy when it is finally closed;
NFPlugin would write every collected id once per shard (on 50,000 tests, a large JSON file
each time). As under pytest-xdist (whose workers write neither, and whose controller writes
both), the workers keep the two plugins for what they do while collecting (select and order
from the records) and drop them before any test runs; the engine writes both records from the
whole run (reporting/pytest_cache.py), at the folder the collecting process reports here.
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


def leave_pytest_cache_to_engine(config: pytest.Config) -> None:
    """Drop pytest's LFPlugin and NFPlugin from this process once collection is over."""
    manager = config.pluginmanager
    for name in ("lfplugin", "nfplugin"):
        plugin = manager.getplugin(name)
        if plugin is not None:
            manager.unregister(plugin)

"""TOML parsed once per content. A resident process resolves the configuration on every run it
serves (the shipped catalog, the project's pyproject.toml, the rootdir search): the files rarely
change, so their parsed tables are kept, keyed by the bytes read. Callers only read them."""

from __future__ import annotations

import sys
from functools import lru_cache
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

TOMLDecodeError = tomllib.TOMLDecodeError


def parse_toml(data: bytes) -> dict[str, Any]:
    """The document's tables (shared between callers: never modify them)."""
    return _parsed(data)


@lru_cache(maxsize=16)
def _parsed(data: bytes) -> dict[str, Any]:
    return tomllib.loads(data.decode("utf-8"))

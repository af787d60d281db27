"""What each test file used at run time, for the skip cache (docs/skip-cache.md): every module
name imported while the file was collected or its tests ran, already imported ones included,
and the project files they read.

The audit hook's `import` event only fires when a module is first loaded, so a test that
imports `pkg.leaf` after another file already did would record nothing. Here
`builtins.__import__` and `importlib.import_module` are wrapped instead: every import
statement executed, and every `import_module` call with a computed name, is noted under the
test file being collected or run (`current`). When nobody is being recorded, the wrappers only
pass the call on. Names are recorded as imported, absolute; the engine resolves them to files.
Files read come from the reads recorder's audit hook (reads.py), under the same `current`.
Standard library only.
"""

from __future__ import annotations

import builtins
import importlib
import importlib.util
from collections.abc import Mapping, Sequence
from typing import Any


class DependencyRecorder:
    def __init__(self) -> None:
        self.current: str | None = None  # the test file being collected or run
        self.imports: dict[str, dict[str, None]] = {}
        self.reads: dict[str, dict[str, None]] = {}
        # Import statements already noted for the current file: code that runs an import in a
        # loop (attrs' generated methods: 250,000 of them in its suite) pays a set lookup.
        self._seen: set[tuple[object, ...]] = set()
        self._seen_for: str | None = None

    def install(self) -> None:
        original_import = builtins.__import__
        original_import_module = importlib.import_module
        recorder = self

        def recording_import(
            name: str,
            globals: Mapping[str, Any] | None = None,
            locals: Mapping[str, Any] | None = None,
            fromlist: Sequence[str] | None = (),
            level: int = 0,
        ) -> Any:
            module = original_import(name, globals, locals, fromlist or (), level)
            current = recorder.current
            if current is not None:
                if current != recorder._seen_for:
                    recorder._seen, recorder._seen_for = set(), current
                package = (globals or {}).get("__package__") if level else None
                key = (name, tuple(fromlist) if fromlist else (), level, package)
                if key not in recorder._seen:
                    recorder._seen.add(key)
                    recorder._note_import(name, globals, fromlist or (), level)
            return module

        def recording_import_module(name: str, package: str | None = None) -> Any:
            module = original_import_module(name, package)
            if recorder.current is not None:
                recorder._note(_absolute(name, package))
            return module

        builtins.__import__ = recording_import
        importlib.import_module = recording_import_module

    def read(self, path: str) -> None:
        """A project file read (from the reads recorder's hook)."""
        if self.current is not None:
            self.reads.setdefault(self.current, {})[path] = None

    def by_file(self) -> tuple[dict[str, tuple[str, ...]], dict[str, tuple[str, ...]]]:
        return (
            {file: tuple(names) for file, names in self.imports.items()},
            {file: tuple(paths) for file, paths in self.reads.items()},
        )

    def _note_import(
        self, name: str, globals: Mapping[str, Any] | None, fromlist: Sequence[str], level: int
    ) -> None:
        try:
            if level:
                package = (globals or {}).get("__package__") or ""
                name = importlib.util.resolve_name("." * level + name, package)
            if name:
                self._note(name)
                for member in fromlist:
                    if member != "*":
                        self._note(f"{name}.{member}")
        except Exception:  # a name this cannot place: the import itself succeeded
            return

    def _note(self, name: str | None) -> None:
        if name and self.current is not None:
            self.imports.setdefault(self.current, {})[name] = None


def _absolute(name: str, package: str | None) -> str | None:
    try:
        return importlib.util.resolve_name(name, package) if name.startswith(".") else name
    except (ImportError, ValueError):
        return None

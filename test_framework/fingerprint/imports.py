"""Which project files a Python file imports, directly or through the files it imports: the
static half of a test file's dependencies.

Read with `ast`, never imported: `import a.b` and `from a import b` (the module `a.b` when there
is one), relative imports resolved against the file's package, imports anywhere in the file
(one inside a test function runs when the test does). Importing `a.b.c` also runs
`a/__init__.py` and `a/b/__init__.py`: they are dependencies too. A name resolves to a file
under an import root: the project root, `src/`, and the file's own base folder (the first
folder up without `__init__.py`, which pytest puts on `sys.path` to import a test module, so
`from helpers import x` finds a sibling). What a computed name imports
(`importlib.import_module(name)`) is not seen here: the worker records what was imported at
run time.
"""

from __future__ import annotations

import ast
from collections.abc import Sequence
from pathlib import Path


def base_folder(file: Path) -> Path:
    """The folder pytest's default import mode puts on `sys.path` for `file`."""
    folder = file.parent
    while (folder / "__init__.py").exists() and folder.parent != folder:
        folder = folder.parent
    return folder


def module_name(file: Path, root: Path) -> tuple[str, bool] | None:
    """`file`'s dotted name under `root`, and whether it is a package's `__init__`."""
    try:
        parts = list(file.relative_to(root).with_suffix("").parts)
    except ValueError:
        return None
    package = parts[-1] == "__init__"
    if package:
        parts = parts[:-1]
    return (".".join(parts), package) if parts else None


def imported_names(source: str, name: str, package: bool) -> set[str]:
    """Absolute module names a file's source imports (`name`: its own dotted name)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return set()
    found: set[str] = set()
    own_package = name if package else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = own_package.split(".") if own_package else []
                anchor = anchor[: len(anchor) - (node.level - 1)] if node.level > 1 else anchor
                base = ".".join([*anchor, *([base] if base else [])])
            if not base:
                continue
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names if alias.name != "*")
    return found


class ImportGraph:
    """Static imports between the project's files, parsed once each."""

    def __init__(self, root: Path, roots: Sequence[Path] | None = None) -> None:
        self.root = root
        src = root / "src"
        self.roots = list(roots) if roots is not None else [root, *([src] if src.is_dir() else [])]
        self._direct: dict[Path, frozenset[Path]] = {}

    def direct(self, file: Path) -> frozenset[Path]:
        """The project files `file` imports itself (with the packages' `__init__` they run)."""
        known = self._direct.get(file)
        if known is not None:
            return known
        roots = [base_folder(file), *self.roots]
        own = next((n for r in roots if (n := module_name(file, r)) is not None), None)
        name, package = own if own is not None else ("", False)
        try:
            source = file.read_text(encoding="utf-8", errors="replace")
        except OSError:
            source = ""
        files: set[Path] = set()
        for imported in imported_names(source, name, package):
            files.update(self.resolve(imported, roots))
        files.discard(file)
        result = frozenset(files)
        self._direct[file] = result
        return result

    def closure(self, file: Path) -> frozenset[Path]:
        """Every project file importing `file` runs, directly or through others."""
        seen: set[Path] = set()
        todo = [file]
        while todo:
            for dependency in self.direct(todo.pop()):
                if dependency not in seen:
                    seen.add(dependency)
                    todo.append(dependency)
        seen.discard(file)
        return frozenset(seen)

    def resolve(self, name: str, roots: Sequence[Path]) -> set[Path]:
        """The files importing `name` runs, under the first root that has its top package."""
        parts = name.split(".")
        for root in roots:
            found: set[Path] = set()
            for depth in range(1, len(parts) + 1):
                folder = root.joinpath(*parts[:depth])
                init, module = folder / "__init__.py", folder.with_suffix(".py")
                if init.is_file():
                    found.add(init)
                    continue
                if module.is_file():
                    found.add(module)  # past a module, `a.b.X` names attributes, not files
                break
            if found:
                return found
        return set()

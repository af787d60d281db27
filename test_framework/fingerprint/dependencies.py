"""Everything a test file depended on, as project-relative paths: the skip cache digests each
of them when it records the file, and compares them when it considers skipping it.

The file itself; what it imports statically (transitively); its conftest chain and what those
import; the configuration files at the rootdir; every module name it imported at run time
(worker/deps.py), resolved to the project's files with what they import in turn; and the
files and folders it read. Names that resolve to no project file (the standard library,
installed packages) are the environment fingerprint's business.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path, PurePosixPath

from . import CONFIG_FILES
from .imports import ImportGraph, base_folder


def file_dependencies(
    root: Path,
    test_file: str,
    graph: ImportGraph,
    imports: Iterable[str] = (),
    reads: Iterable[str] = (),
) -> set[str]:
    found: set[Path] = {root / test_file}
    for conftest in conftest_chain(test_file, lambda path: (root / path).is_file()):
        found.add(root / conftest)
    roots = [base_folder(root / test_file), *graph.roots]
    for name in imports:
        found.update(graph.resolve(name, roots))
    for start in list(found):
        found.update(graph.closure(start))
    paths = {_relative(path, root) for path in found}
    paths.update(name for name in sorted(CONFIG_FILES) if (root / name).is_file())
    paths.update(reads)
    paths.discard("")
    return paths


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return ""


def conftest_chain(test_file: str, existing: Callable[[str], bool]) -> list[str]:
    """The `conftest.py` files pytest loads for `test_file`, from the rootdir down."""
    parents = list(PurePosixPath(test_file).parents)[::-1]
    chain = [str(parent / "conftest.py") for parent in parents]
    return [path.removeprefix("./") for path in chain if existing(path.removeprefix("./"))]

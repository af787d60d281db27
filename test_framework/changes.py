"""`--changed [REF]`: the project files that differ between the working tree (staged and
unstaged changes, and untracked files) and a git revision, relative to the project root.
A folder that is not a git checkout, or a revision git does not know, is a usage error that
says so."""

from __future__ import annotations

import os
from pathlib import Path

import anyio

from .errors import UsageError


async def changed_files(root: Path, ref: str) -> list[str]:
    top = (await _git(root, "rev-parse", "--show-toplevel")).strip()
    if not top:
        raise UsageError(f"--changed: {root} is not in a git checkout")
    listed = await _git(root, "diff", "--name-only", ref, "--")
    untracked = await _git(root, "ls-files", "--others", "--exclude-standard", "--full-name")
    return _under(root, top, [*listed.splitlines(), *untracked.splitlines()])


def _under(root: Path, top: str, names: list[str]) -> list[str]:
    """git's names (relative to its top folder) as paths under the project root."""
    found = set()
    for name in names:
        path = os.path.relpath(Path(top, name), root)
        if name and not path.startswith(".."):
            found.add(path.replace(os.sep, "/"))
    return sorted(found)


async def _git(root: Path, *args: str) -> str:
    try:
        done = await anyio.run_process(["git", "-C", str(root), *args], check=False)
    except OSError as exc:
        raise UsageError(f"--changed needs git: {exc}") from None
    if done.returncode != 0:
        reason = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise UsageError(
            f"--changed: git {' '.join(args[:2])}: {reason[-1] if reason else 'failed'}"
        )
    return done.stdout.decode("utf-8", "replace")

"""What the client and the resident process say to each other, and where the socket lives.
Standard library only.

One JSON object per line. The client opens with a request: `{"op": "run", "argv": [...],
"cwd": ..., "env": {...}, "tty": bool, "prog": ...}`, `{"op": "status"}` or `{"op": "stop"}`;
during a run it may send `{"op": "interrupt"}` (Ctrl-C). The resident process answers a run
with `{"o": text}` and `{"e": text}` (the run's stdout and stderr, in order) and ends with
`{"exit": code}`, or `{"stale": why}` when it must be replaced first; a status with
`{"status": {...}}`.

The socket is `<cache dir>/resident-<key>.sock` (key: the interpreter and the project), or, where
that path is too long for a Unix socket, the same name in a folder of the user's own under the
temporary folder. Its folder and the socket belong to the user and nobody else may use them.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path
    from typing import Any

# sockaddr_un's sun_path: 108 bytes on Linux, 104 on macOS.
_MAX_SOCKET_PATH = 100


class UnsafeSocket(Exception):
    """The socket or its folder belongs to someone else, or others may use it."""


def socket_path(cache_dir: Path, project_root: Path) -> Path:
    import hashlib  # not on the client's path: it remembers the socket (places.py)
    from pathlib import Path

    key = hashlib.sha256(f"{sys.executable}\0{project_root}".encode()).hexdigest()[:16]
    path = cache_dir / f"resident-{key}.sock"
    if len(os.fsencode(path)) <= _MAX_SOCKET_PATH:
        return path
    # Not tempfile.gettempdir(): its import costs the client more than the rest of its work.
    temporary = os.environ.get("TMPDIR") or "/tmp"
    return Path(temporary) / f"test_framework-{os.getuid()}" / path.name


def check_owned(path: str | os.PathLike[str]) -> None:
    """The socket (and its folder) must be the user's, and closed to others."""
    socket_file = os.fspath(path)
    for target, what in ((os.path.dirname(socket_file), "folder"), (socket_file, "socket")):
        try:
            info = os.stat(target)
        except FileNotFoundError:
            continue
        if info.st_uid != os.getuid():
            raise UnsafeSocket(
                f"the resident process's {what} {target} belongs to uid {info.st_uid}, not to "
                f"you (uid {os.getuid()}); not using it"
            )
        if what == "socket" and (not stat.S_ISSOCK(info.st_mode) or info.st_mode & 0o077):
            raise UnsafeSocket(
                f"{target} is not a socket closed to other users (mode "
                f"{stat.S_IMODE(info.st_mode):o}); not using it"
            )


def encode(message: dict[str, Any]) -> bytes:
    return (json.dumps(message) + "\n").encode("utf-8")


def lines(sock: socket.socket) -> Iterator[dict[str, Any]]:
    """Messages from a blocking socket until it closes."""
    buffer = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            if line:
                yield json.loads(line)

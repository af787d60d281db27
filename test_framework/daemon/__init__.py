"""The resident process (docs/resident.md): a long-lived engine per project and interpreter that
keeps a warm, collected pytest between runs, and the thin client that reaches it.

`client` is what `python -m test_framework` runs first: standard library (and the engine's
standard-library config) only, so a run served by a resident process starts in tens of
milliseconds. `server` is the resident process itself: the engine's own loop, serving one run
at a time on a Unix socket, with a `WarmPool` (execution/resident.py). `wire` is what the two
say to each other, and where the socket lives.
"""

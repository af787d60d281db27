"""The child side: everything that runs inside the user's pytest processes.

The plugin (`plugin.py`), the zygote's fork server, the progress board and the process clock, and
the protocol both sides speak (`protocol.py`). Standard library and pytest only: nothing here may
import the engine (anyio, structlog, the store), which would load it into the user's tests. The
import-layer contract in pyproject.toml holds this package to that.
"""

"""`python -m test_framework ...` (and the `test-framework` command): a resident process
serves the run when there is one to serve it (daemon/client.py, standard library only); else
the engine runs here, its zygote started before the engine imports itself (the two starts
overlap: execution/prestart.py)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .daemon.client import resident_exit_code

if TYPE_CHECKING:
    from .execution.prestart import Prestarted

PROG = "python -m test_framework"
# The first words that make a command something else than a run.
SUBCOMMANDS = (
    *("flaky", "why", "cache", "daemon", "audit", "merge-reports", "shard-verify"),
    *("history", "slowest", "stats", "store"),
)


def main(prog: str = PROG) -> int:
    code = resident_exit_code(sys.argv[1:], prog)
    if code is None:
        try:
            prestarted = early_zygote(sys.argv[1:], prog)
        except KeyboardInterrupt:
            print(f"{prog}: interrupted", file=sys.stderr)
            return 2  # pytest's "interrupted"; a zygote started by then ends with this process
        from .cli import main as engine_main

        code = engine_main(prog=prog, prestarted=prestarted)
    return code


def early_zygote(args: Sequence[str], prog: str) -> Prestarted | None:
    """The run's zygote, started now, when the command line is a plain run whose configuration
    reads cleanly: anything else (a mistake included) is left to the engine, which reports it."""
    if args and args[0] in SUBCOMMANDS:
        return None
    options = args[: args.index("--")] if "--" in args else args
    if "-h" in options or "--help" in options:
        return None  # argparse would print the help here, and the engine again
    try:
        import os

        from .command_request import parse_request
        from .execution.prestart import prestart
        from .foreground import foreground_option
        from .request import resolve

        request, _ = parse_request(args, prog)
        settings = resolve(request)
        if settings.watch or foreground_option(settings.pytest_args) is not None:
            return None
        return prestart(settings, os.environ)
    except BaseException:
        return None


def console_main() -> int:
    return main("test-framework")


if __name__ == "__main__":
    sys.exit(main())

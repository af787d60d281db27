"""pytest-cov under the engine, as under pytest-xdist.

Left alone, pytest-cov runs its central mode in every worker: each erases the data at its start,
combines every data file at its end (racing the other workers) and prints a table of its own
share, which nobody sees. Under xdist, workers only save their data and the master combines it
once and prints the table. Here the same split: a worker is an xdist-style coverage worker (it
carries `workerinput`, which is how pytest-cov and pytest's cache plugins recognise a worker:
they leave combining and cache writes to the master), and after the run the engine starts one
summary process (worker/summary.py): pytest collecting nothing, where pytest-cov's own central
mode combines the workers' data and prints its own table, `--cov-fail-under` included.

No process of the run erases data: the summary process removes the previous run's combined
file once, before combining, as plain pytest-cov would have at its start (not with
`--cov-append`).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

from .protocol import ENV_CHANNEL, ENV_SUMMARY


def measuring(namespace: Any) -> bool:
    """Whether pytest-cov measures this run (`--cov` given, `--no-cov` not)."""
    return bool(getattr(namespace, "cov_source", None)) and not getattr(namespace, "no_cov", False)


@pytest.hookimpl(wrapper=True)
def pytest_load_initial_conftests(early_config: pytest.Config) -> Generator[None]:
    """Before pytest-cov starts (in this same hook): no worker erases data, and the report
    process removes only the last run's combined file."""
    namespace = early_config.known_args_namespace
    reporting = bool(os.environ.get(ENV_SUMMARY))
    if (reporting or os.environ.get(ENV_CHANNEL)) and measuring(namespace):
        if reporting and not namespace.cov_append:
            _remove_combined_data(namespace.cov_config)
        namespace.cov_append = True
    return (yield)


def _remove_combined_data(config_file: str) -> None:
    import coverage  # pytest-cov's dependency: present whenever `--cov` parsed

    data_file = coverage.Coverage(config_file=config_file).config.data_file
    Path(data_file).unlink(missing_ok=True)


def become_coverage_worker(config: pytest.Config) -> None:
    """At session start, before pytest-cov picks its mode: an xdist-style worker on this host,
    in this folder, so it saves its data for the summary process to combine."""
    if not measuring(config.option) or config.pluginmanager.get_plugin("_cov") is None:
        return
    config.workerinput = {  # type: ignore[attr-defined]
        "workerid": f"tf{os.getpid()}",
        "cov_master_host": socket.gethostname(),
        "cov_master_topdir": os.getcwd(),
        "cov_master_rsync_roots": [],
    }
    config.workeroutput = {}  # type: ignore[attr-defined]

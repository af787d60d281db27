"""A worker asked to record dependencies says, per test file, every module name it imported
(also one another file had imported already, also by a computed name) and the project files it
read, while the file was collected or its tests ran."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from test_framework.execution.channel import read_messages
from test_framework.execution.process import spawn_worker
from test_framework.worker.protocol import ENV_RECORD_DEPS, WORKER_PLUGIN, Deps

pytestmark = pytest.mark.anyio

PROJECT = {
    "pytest.ini": "[pytest]\n",
    "pkg/__init__.py": "",
    "pkg/leaf.py": "VALUE = 1\n",
    "pkg/lazy.py": "def later():\n    from . import leaf\n    return leaf.VALUE\n",
    "pkg/data.txt": "42\n",
    "test_static.py": "from pkg.leaf import VALUE\n\ndef test_static():\n    assert VALUE == 1\n",
    "test_dynamic.py": (
        "import importlib\n\n"
        "def test_dynamic():\n"
        "    name = 'pkg.' + 'leaf'\n"
        "    assert importlib.import_module(name).VALUE == 1\n"
    ),
    "test_reads.py": (
        "from pathlib import Path\n\n"
        "def test_reads():\n"
        "    assert Path('pkg/data.txt').read_text() == '42\\n'\n"
    ),
    "test_lazy.py": "import pkg.lazy\n\ndef test_lazy():\n    assert pkg.lazy.later() == 1\n",
}


async def recorded(root: Path, record: bool = True) -> Deps:
    for name, text in PROJECT.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    found: list[Deps] = []
    async with spawn_worker(
        ["-m", "pytest", "-p", WORKER_PLUGIN, "-p", "no:cacheprovider", "-q"],
        cwd=str(root),
        env=dict(os.environ),
        protocol_env={ENV_RECORD_DEPS: "1"} if record else {},
    ) as worker:
        async for message in read_messages(worker.channel):
            if isinstance(message, Deps):
                found.append(message)
        await worker.wait()
    assert len(found) == 1
    return found[0]


async def test_each_test_file_records_what_it_imported_and_read(tmp_path: Path) -> None:
    deps = await recorded(tmp_path)
    imports, reads = deps.imports or {}, deps.reads or {}
    assert "pkg.leaf" in imports["test_static.py"]  # at collection, module level
    # Imported already by test_static.py, and by a name no static analysis sees:
    assert "pkg.leaf" in imports["test_dynamic.py"]
    assert "pkg.data.txt" not in reads.get("test_dynamic.py", ())
    assert "pkg/data.txt" in reads["test_reads.py"]
    # A relative import executed inside a project function, at test time:
    assert "pkg.leaf" in imports["test_lazy.py"]
    assert "pkg/data.txt" not in reads.get("test_static.py", ())


async def test_nothing_is_recorded_unless_asked(tmp_path: Path) -> None:
    deps = await recorded(tmp_path, record=False)
    assert not deps.imports
    assert not deps.reads

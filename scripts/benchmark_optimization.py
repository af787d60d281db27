#!/usr/bin/env python
"""Benchmark the engine side by side with plain pytest, pytest-xdist and pytest-fast.

    python scripts/benchmark_optimization.py --category unit [--suite DIR] [--runs N]
        [--python PY] [--baseline-python PY]
        [--modes pytest,xdist,cold,warm,changed,fast,fast-cold,rstest,rstest-cold,
                 resident,resident-changed,resident-test-changed,cached,testmon]
        [--no-bytecode] [--json PATH]

In one run, alternating mode by mode so the machine's drift hits every mode alike, it measures:
  pytest    plain serial `pytest` on the category's selection
  xdist     `pytest -n auto` (when pytest-xdist is installed for PY)
  cold      the engine with its cache folder cleared (no durations, no cached collection)
  warm      the engine again, nothing changed (durations known; every test runs again)
  changed   the engine after one source file's mtime and content changed
  fast      pytest-fast's warm server (when installed for PY), started once before the runs
  fast-cold pytest-fast with no server up: its client starts one (stopped after each run)
  rstest    rstest (when its binary sits beside PY) with its cache (durations) kept
  rstest-cold  rstest with its cache folder (.rstest_cache) removed before each run
  dask      the engine with --executor dask on a local cluster started before the runs (a
            `dask scheduler` and two `dask worker` processes of one thread each, when PY has
            distributed), store and collection warm: the peer for `warm`
  resident  the engine through its resident process (started before the runs), every test
            run again: a warm collected zygote, a thin client
  resident-changed  the same after one source file changed (the zygote is replaced; the
            base layer too when the file is one pytest itself imports)
  resident-test-changed  the same after one test file changed (the zygote is replaced, forked
            from the base layer, which stays)
  cached    the engine with its skip cache (`--skip-cache`) through the resident process,
            nothing changed: only the trip-wire's sample and the files with failures run
  testmon   `pytest --testmon` with nothing changed (when installed for PY; its data recorded
            before the runs), the peer for `cached`
  cached-changed / testmon-changed  the same two right after a real change to one module of
            the package (a function added at its end, with a body no run saw before)
  (For these four, "nothing changed" is since the tool's own last run: an edit another mode
  made in between is run once, untimed, first.)
The engine's cold, warm and changed modes run with --no-resident: each starts from zero.
For each: median wall time, median user+sys CPU of the process tree, peak RSS of the tree, the
ratio to plain pytest and to xdist, and the outcome counts, which must equal plain pytest's (the
table says SAME or DIFF; a `cached` test counts as the outcome it was recorded with; testmon's
row says INCR). Timing lives here, never in the unit tests.

--baseline-python PY2 compares two engines in one run (before and after a change: two
virtualenvs that differ only in the engine installed): it adds the modes cold@base and
warm@base (and changed@base when changed is measured), `PY2 -m test_framework` with the same
arguments and a cache folder of its own, in the same loop after the other modes, and prints each
engine mode's after/before ratio of median wall times under the table.

The measured commands run with bytecode caches on, as users have them (PYTHONDONTWRITEBYTECODE is
removed from their environment; `cold` clears the engine's cache folder, not `__pycache__`);
--no-bytecode sets PYTHONDONTWRITEBYTECODE=1 instead (every process compiles what it imports, as
the runs in docs/benchmarks.md up to 2026-11-29 did). Before the loop each engine runs once
unmeasured: its store and the suite's bytecode are then warm.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent

_COUNT = re.compile(
    r"(\d+) (passed|failed|errors?|skipped|xfailed|xpassed|flaky|crashed|cached|deselected)"
)
ALL_MODES = (
    "pytest",
    "xdist",
    "cold",
    "warm",
    "changed",
    "fast",
    "fast-cold",
    "rstest",
    "rstest-cold",
    "dask",
    "resident",
    "resident-changed",
    "resident-test-changed",
    "cached",
    "testmon",
    "cached-changed",
    "testmon-changed",
)
ENGINE_MODES = ("cold", "warm", "changed")
RESIDENT_MODES = (
    "resident",
    "resident-changed",
    "resident-test-changed",
    "cached",
    "cached-changed",
)
# Each runs right after a real code change (edit_one_module): a state neither tool saw before.
EDITED_MODES = ("cached-changed", "testmon-changed")
BASE = "@base"  # the suffix of the baseline engine's modes
MEASURE_TIMEOUT = 180


@dataclass
class Sample:
    wall: float
    cpu: float
    peak_rss_mb: float
    counts: dict[str, int]
    returncode: int
    # The engine's own split of the run (its JSON report's "timings"; empty for the peers).
    timings: dict[str, float | None] = field(default_factory=dict)


@dataclass
class Row:
    mode: str
    samples: list[Sample] = field(default_factory=list)

    def median(self, attribute: str) -> float:
        return float(statistics.median(getattr(s, attribute) for s in self.samples))


def closing_counts(output: str) -> dict[str, int]:
    # pytest's closing line ("... passed in 1.2s"), or pytest-fast's ("results : ... passed").
    lines = [
        line
        for line in output.splitlines()
        if (" in " in line or line.strip().startswith("results")) and _COUNT.search(line)
    ]
    if not lines:
        return {}
    counts: dict[str, int] = {}
    for number, word in _COUNT.findall(lines[-1]):
        word = "error" if word.startswith("error") else word
        counts[word] = counts.get(word, 0) + int(number)
    counts["passed"] = counts.get("passed", 0) + counts.pop("flaky", 0)
    return counts


def measure(command: list[str], cwd: Path, env: dict[str, str]) -> Sample:
    """Wall time, CPU of every descendant, peak RSS of the tree (sampled every 20 ms); for the
    engine, also its own split of the run (where the time went), from its JSON report."""
    report_path = None
    if command[1:3] == ["-m", "test_framework"]:
        fd, name = tempfile.mkstemp(prefix="bench-report-", suffix=".json")
        os.close(fd)
        report_path = Path(name)
        command = [*command[:3], "--report", name, *command[3:]]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    process = subprocess.Popen(
        command,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    peak = [0]
    done = threading.Event()

    def sample_rss() -> None:
        root = psutil.Process(process.pid)
        while not done.is_set():
            try:
                tree = [root, *root.children(recursive=True)]
                rss = 0
                for proc in tree:
                    with contextlib.suppress(psutil.Error):
                        rss += proc.memory_info().rss
                peak[0] = max(peak[0], rss)
            except psutil.Error:
                pass
            done.wait(0.02)

    sampler = threading.Thread(target=sample_rss, daemon=True)
    sampler.start()
    try:
        output, _ = process.communicate(timeout=MEASURE_TIMEOUT)
    except subprocess.TimeoutExpired:  # a hung peer (pytest-fast on filterwarnings=error suites)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        output += f"\nbenchmark: killed after {MEASURE_TIMEOUT}s"
    wall = time.perf_counter() - started
    done.set()
    sampler.join()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    timings: dict[str, float | None] = {}
    if report_path is not None:
        with contextlib.suppress(OSError, ValueError, AttributeError):
            timings = json.loads(report_path.read_text(encoding="utf-8")).get("timings") or {}
        report_path.unlink(missing_ok=True)
    counts = closing_counts(output)
    return Sample(wall, cpu, peak[0] / 2**20, counts, process.returncode, timings)


def agrees(counts: dict[str, int], reference: dict[str, int]) -> bool:
    """Counts equal pytest's, where a cached test counts as the outcome it was recorded
    with: every other outcome at most pytest's, and the cached ones make up the difference."""
    cached = counts.get("cached", 0)
    rest = {k: v for k, v in counts.items() if k not in ("cached", "deselected")}
    if not cached:
        return rest == reference
    short = {k: reference.get(k, 0) - rest.get(k, 0) for k in set(reference) | set(rest)}
    return all(v >= 0 for v in short.values()) and sum(short.values()) == cached


def selection_args(suite: Path, categories: list[str]) -> list[str]:
    """pytest's arguments for the categories, as the engine in this checkout selects them.

    The script's only use of the engine's own code (the repository's working tree, whatever
    engine PY runs), kept here so that a refactor moving these functions changes one place.
    """
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from test_framework.config import load_catalog
    from test_framework.discovery import queries_for, query_args

    catalog = load_catalog(suite)
    chosen = [catalog.categories[name] for name in categories]
    queries = queries_for(chosen, suite)
    if len(queries) != 1:
        raise SystemExit("benchmark: categories that need several collection queries")
    return query_args(queries[0], [])


def start_dask_cluster(
    python: str, cwd: Path, env: dict[str, str]
) -> tuple[str, list[subprocess.Popen[bytes]]]:
    """A scheduler on a free port and two one-thread workers; waits until both joined."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    address = f"tcp://127.0.0.1:{port}"

    def launch(argv: list[str]) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    module = [python, "-m"]
    processes = [
        launch(
            [
                *module,
                *("distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", str(port)),
                *("--dashboard-address", ":0"),
            ]
        )
    ]
    for _ in range(2):
        worker = [*module, "distributed.cli.dask_worker", address, "--nthreads", "1"]
        processes.append(launch([*worker, "--no-dashboard"]))
    wait = (
        "from distributed import Client;"
        f"c = Client({address!r}, timeout='60s'); c.wait_for_workers(2, timeout=60); c.close()"
    )
    subprocess.run([python, "-c", wait], check=True, env=env, timeout=120)
    return address, processes


def stop_processes_naming(path: Path) -> None:
    """Kill what has `path` on its command line (a daemon a client started) and wait for it."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        if str(path) in " ".join(proc.info["cmdline"] or ()):
            with contextlib.suppress(psutil.Error):
                proc.kill()
                found.append(proc)
    psutil.wait_procs(found, timeout=10)
    path.unlink(missing_ok=True)


def has_module(python: str, module: str) -> bool:
    probe = [
        python,
        "-c",
        f"import importlib.util,sys; sys.exit(not importlib.util.find_spec('{module}'))",
    ]
    return subprocess.run(probe, check=False).returncode == 0


def engine_location(python: str, cwd: Path) -> str:
    """Where `python -m test_framework`, started in cwd, imports the engine from."""
    probe = [python, "-c", "import test_framework; print(test_framework.__file__)"]
    done = subprocess.run(probe, cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"benchmark: {python} cannot import test_framework: {done.stderr.strip()}")
    return str(Path(done.stdout.strip()).parent)


def clear_store(cache: Path) -> None:
    shutil.rmtree(cache / "results.sqlite", ignore_errors=True)
    for leftover in cache.glob("results.sqlite*"):
        leftover.unlink()


def touch_one_source(suite: Path, test: bool = False) -> None:
    """Change one source file (content and mtime): an edit the engine must notice. `test`:
    the first test file instead."""
    sources = sorted(
        p for p in suite.rglob("*.py") if "test" not in p.name and ".test_framework" not in p.parts
    )
    tests = sorted(p for p in suite.rglob("test_*.py") if ".test_framework" not in p.parts)
    target = sources[0] if sources and not test else tests[0]
    text = target.read_text(encoding="utf-8")
    marker = "# benchmark edit\n"
    target.write_text(
        text[: -len(marker)] if text.endswith(marker) else text + marker, encoding="utf-8"
    )


_EDIT_MARK = "# benchmark_optimization.py edit\n"


def edit_one_module(suite: Path, serial: int | None) -> None:
    """A real change to one module of the project's package (the first, by path, that is
    not an `__init__.py`): a function at its end whose body is `serial`, new each time (None:
    the function goes). Every tool sees a change from whatever it saw last."""
    packaged = sorted(
        p
        for p in suite.rglob("*.py")
        if (p.parent / "__init__.py").exists()
        and p.name != "__init__.py"
        and "test" not in str(p.relative_to(suite))
        and not any(
            part.startswith(".") or part in ("docs", "examples", "bench", "benchmarks")
            for part in p.relative_to(suite).parts
        )
    )
    if not packaged:
        return
    target = packaged[0]
    text = target.read_text(encoding="utf-8").split(_EDIT_MARK)[0]
    if serial is not None:
        text += f"{_EDIT_MARK}def _benchmark_edit():\n    return {serial}\n"
    target.write_text(text, encoding="utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--category", action="append", default=[])
    parser.add_argument("--suite", type=Path, default=REPO)
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument(
        "--baseline-python",
        metavar="PY",
        help="another installation's interpreter: adds cold@base, warm@base (changed@base)",
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--modes", default=",".join(ALL_MODES))
    parser.add_argument("--optimization", default="ultra_fast")
    parser.add_argument("--engine-arg", action="append", default=[])
    parser.add_argument(
        "--no-bytecode",
        action="store_true",
        help="run with PYTHONDONTWRITEBYTECODE=1 (default: bytecode caches on, as users have them)",
    )
    parser.add_argument("--json", type=Path)
    ns = parser.parse_args()
    suite = ns.suite.resolve()
    categories = ns.category or ["all"]
    args = selection_args(suite, categories)
    modes = [m for m in ns.modes.split(",") if m]
    if unknown := [m for m in modes if m not in ALL_MODES]:
        parser.error(f"unknown modes {', '.join(unknown)} (choose from {', '.join(ALL_MODES)})")
    if "xdist" in modes and not has_module(ns.python, "xdist"):
        modes.remove("xdist")
    for mode in ("fast", "fast-cold"):
        if mode in modes and not has_module(ns.python, "pytest_fast"):
            modes.remove(mode)
    if "dask" in modes and not has_module(ns.python, "distributed"):
        modes.remove("dask")
    rstest = Path(ns.python).parent / "rstest"
    for mode in ("rstest", "rstest-cold"):
        if mode in modes and not rstest.exists():
            modes.remove(mode)
    if "testmon" in modes and not has_module(ns.python, "testmon"):
        modes.remove("testmon")
    # mode suffix -> (interpreter, the folder it imports the engine from)
    engines = {"": (ns.python, engine_location(ns.python, suite))}
    if ns.baseline_python:
        engines[BASE] = (ns.baseline_python, engine_location(ns.baseline_python, suite))
        if engines[BASE][1] == engines[""][1]:
            raise SystemExit(f"benchmark: both interpreters run the engine in {engines[''][1]}")
        # Grouped after the other modes: each engine's warm follows its own cold, and its
        # changed edits a file its store saw last (another engine's edit would be undone).
        modes += [m + BASE for m in ("cold", "warm") + ("changed",) * ("changed" in modes)]
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    if ns.no_bytecode:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    cache = Path(tempfile.mkdtemp(prefix="bench-cache-"))
    caches = {suffix: cache / f"engine{suffix}" for suffix in engines}
    pytest_cmd = [ns.python, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args]
    commands = {"pytest": pytest_cmd, "xdist": [*pytest_cmd, "-n", "auto"]}
    for suffix, (python, _) in engines.items():
        caches[suffix].mkdir()
        for mode in ENGINE_MODES:
            commands[mode + suffix] = [
                python,
                "-m",
                "test_framework",
                "--project-root",
                str(suite),
                "--cache-dir",
                str(caches[suffix]),
                "--optimization",
                ns.optimization,
                "--retries",
                "0",
                "--no-resident",
                *ns.engine_arg,
                *(f"--category={c}" for c in categories),
            ]
    resident_cache = cache / "resident"
    resident_cmd = [
        *commands["warm"][: commands["warm"].index("--no-resident")],
        "--resident",
        *ns.engine_arg,
        *(f"--category={c}" for c in categories),
    ]
    resident_cmd[resident_cmd.index("--cache-dir") + 1] = str(resident_cache)
    for mode in ("resident", "resident-changed", "resident-test-changed"):
        commands[mode] = resident_cmd
    commands["cached"] = commands["cached-changed"] = [*resident_cmd, "--skip-cache"]
    # testmon needs pytest's cache provider (pytest_cmd turns it off).
    commands["testmon"] = [ns.python, "-m", "pytest", "-q", *args, "--testmon"]
    commands["testmon-changed"] = commands["testmon"]
    fast_server: subprocess.Popen[bytes] | None = None
    if "fast" in modes:
        sock = cache / "fast.sock"
        fast_server = subprocess.Popen(
            [ns.python, "-m", "pytest_fast", "--serve", "--address", str(sock), "--workers", "2"],
            cwd=suite,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
        # The client takes pytest's selection but none of its output options (no -q).
        commands["fast"] = [ns.python, "-m", "pytest_fast", "--address", str(sock), *args]
        measure(commands["fast"], suite, env)  # warm it: the peer's advantage, given fairly
    fast_cold_sock = cache / "fast-cold.sock"
    commands["fast-cold"] = [
        ns.python,
        "-m",
        "pytest_fast",
        "--address",
        str(fast_cold_sock),
        *args,
    ]
    # rstest needs the interpreter named (it looks for one with its shim on PATH).
    commands["rstest"] = [str(rstest), "--python", ns.python, "-q", *args]
    commands["rstest-cold"] = commands["rstest"]
    rstest_cache = suite / ".rstest_cache"
    had_rstest_cache = rstest_cache.exists()
    if "rstest" in modes:
        measure(commands["rstest"], suite, env)  # its durations known, as the engine's warm
    cluster: list[subprocess.Popen[bytes]] = []
    if "dask" in modes:
        address, cluster = start_dask_cluster(ns.python, suite, env)
        dask_cache = cache / "dask"
        commands["dask"] = [
            *commands["warm"][: commands["warm"].index("--cache-dir") + 1],
            str(dask_cache),
            *commands["warm"][commands["warm"].index("--cache-dir") + 2 :],
            "--executor",
            "dask",
            "--scheduler",
            address,
        ]
        measure(commands["dask"], suite, env)  # its store and collection warm, as `warm`'s
    warmed = {
        "resident": ("resident", "resident-changed", "resident-test-changed"),
        "cached": ("cached", "cached-changed"),
    }
    warmed["testmon"] = ("testmon", "testmon-changed")
    for mode, needs in warmed.items():
        if any(m in modes for m in needs):
            measure(commands[mode], suite, env)  # records, and starts the resident process
            measure(commands[mode], suite, env)  # the skip cache trusts a second look
    rows = {mode: Row(mode) for mode in modes}
    edits = 0  # touch_one_source calls so far
    seen: dict[str, int] = {}  # engine suffix -> the edits its store has seen
    # The skip cache's and testmon's records -> the edits they have seen: "nothing changed"
    # means nothing since that tool last ran, so an edit another mode made is run once first.
    recorded = {"cached": 0, "testmon": 0}
    try:
        for suffix in engines:  # the store and the suite's bytecode warm before any measure
            if any(kind + suffix in modes for kind in ENGINE_MODES):
                measure(commands["warm" + suffix], suite, env)
                seen[suffix] = edits
        for _ in range(ns.runs):
            for mode in modes:
                kind, _, rest = mode.partition("@")
                suffix = "@" + rest if rest else ""
                if kind in ENGINE_MODES and kind != "cold" and seen.get(suffix) != edits:
                    measure(commands[mode], suite, env)  # its store must see the suite as it is
                if kind == "cold":
                    clear_store(caches[suffix])
                if kind == "rstest-cold":
                    shutil.rmtree(rstest_cache, ignore_errors=True)
                family = kind.removesuffix("-changed")
                if family in recorded and recorded[family] != edits:
                    measure(commands[family], suite, env)  # it records the suite as it is
                if kind in ("changed", "resident-changed", "resident-test-changed"):
                    touch_one_source(suite, test=kind == "resident-test-changed")
                    edits += 1
                if kind in EDITED_MODES:
                    edit_one_module(suite, edits)
                    edits += 1
                rows[mode].samples.append(measure(commands[mode], suite, env))
                if kind == "fast-cold":
                    stop_processes_naming(fast_cold_sock)
                if kind in ENGINE_MODES:
                    seen[suffix] = edits
                if family in recorded:
                    recorded[family] = edits
    finally:
        edit_one_module(suite, None)
        if any(mode in modes for mode in RESIDENT_MODES):
            stop = [ns.python, "-m", "test_framework", "daemon", "stop", "--cache-dir"]
            subprocess.run([*stop, str(resident_cache)], cwd=suite, check=False, env=env)
        for leftover in suite.glob(".testmondata*"):
            leftover.unlink()
        stop_processes_naming(fast_cold_sock)
        for process in reversed(cluster):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            process.wait()
        if not had_rstest_cache:
            shutil.rmtree(rstest_cache, ignore_errors=True)
        if fast_server is not None:
            # The daemon, its forkserver, and any daemon a client started on the same socket.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(fast_server.pid, signal.SIGTERM)
            fast_server.wait()
            for proc in psutil.process_iter(["cmdline"]):
                if str(cache / "fast.sock") in " ".join(proc.info["cmdline"] or ()):
                    with contextlib.suppress(psutil.Error):
                        proc.kill()
        shutil.rmtree(cache, ignore_errors=True)
    report(rows, suite, categories, ns, engines)
    return 0


def report(
    rows: dict[str, Row],
    suite: Path,
    categories: list[str],
    ns: argparse.Namespace,
    engines: dict[str, tuple[str, str]],
) -> None:
    base = rows.get("pytest")
    xdist = rows.get("xdist")
    reference = base.samples[0].counts if base and base.samples else {}
    bytecode = "PYTHONDONTWRITEBYTECODE=1" if ns.no_bytecode else "bytecode caches on"
    print(
        f"suite {suite} (categories {', '.join(categories)}), {ns.runs} runs each, medians,"
        f" {bytecode}"
    )
    for suffix, (python, path) in engines.items():
        print(f"engine{suffix}: {python} -> {path}")
    header = (
        f"{'mode':<12} {'wall s':>8} {'cpu s':>8} {'peak MB':>8} {'/pytest':>8} {'/xdist':>8}"
        "  outcomes"
    )
    print(header)
    print("-" * len(header))
    modes_doc: dict[str, object] = {}
    document = {
        "suite": str(suite),
        "categories": categories,
        "runs": ns.runs,
        "bytecode_caches": not ns.no_bytecode,
        "python": ns.python,
        "baseline_python": ns.baseline_python,
        "engines": {f"engine{suffix}": path for suffix, (_, path) in engines.items()},
        "modes": modes_doc,
    }
    for mode, row in rows.items():
        wall = row.median("wall")
        counts = row.samples[-1].counts
        same = all(agrees(s.counts, reference) for s in row.samples)
        peak = max(s.peak_rss_mb for s in row.samples)
        # A mode that ran no test (a peer that cannot run this suite) has a time, not a ratio.
        ran = all(s.counts for s in row.samples)
        ran = ran or (mode == "testmon" and all(s.returncode in (0, 1, 5) for s in row.samples))
        vs_pytest = wall / base.median("wall") if base and ran else float("nan")
        vs_xdist = wall / xdist.median("wall") if xdist and ran else float("nan")
        verdict = (
            ("SAME" if same else "DIFF") if ran else f"FAILED (exit {row.samples[-1].returncode})"
        )
        if mode == "testmon" and ran:
            verdict = "INCR"  # it reruns what it thinks changed: counts are not pytest's
        print(
            f"{mode:<12} {wall:>8.2f} {row.median('cpu'):>8.2f} {peak:>8.0f}"
            f" {vs_pytest:>8.2f} {vs_xdist:>8.2f}  {verdict} {counts}"
        )
        modes_doc[mode] = {
            "wall_median": wall,
            "cpu_median": row.median("cpu"),
            "peak_rss_mb": max(s.peak_rss_mb for s in row.samples),
            "ran_tests": ran,
            "ratio_vs_pytest": vs_pytest if ran else None,
            "ratio_vs_xdist": vs_xdist if ran else None,
            "same_outcomes_as_pytest": same,
            "samples": [asdict(s) for s in row.samples],
        }
    after_over_before: dict[str, float] = {}
    for mode in ENGINE_MODES:
        after, before = rows.get(mode), rows.get(mode + BASE)
        if after and before:
            ratio = after.median("wall") / before.median("wall")
            after_over_before[mode] = ratio
            spread = "  ".join(
                f"{row.mode} {min(s.wall for s in row.samples):.2f}-"
                f"{max(s.wall for s in row.samples):.2f} s"
                for row in (after, before)
            )
            print(f"{mode} after/before (median wall): {ratio:.2f}   range: {spread}")
    document["after_over_before"] = after_over_before
    split_rows = [row for row in rows.values() if any(s.timings for s in row.samples)]
    if split_rows:
        names = [name for name in split_rows[0].samples[-1].timings if name != "wall"]
        print("\nwhere the engine's time went (medians, s; from its JSON report):")
        print(f"{'mode':<22}" + "".join(f"{name.replace('_', ' '):>16}" for name in names))
        for row in split_rows:
            cells = []
            for name in names:
                values = [s.timings.get(name) for s in row.samples]
                known = [v for v in values if v is not None]
                cells.append(f"{statistics.median(known):>16.2f}" if known else f"{'-':>16}")
            print(f"{row.mode:<22}" + "".join(cells))
    if ns.json:
        ns.json.write_text(json.dumps(document, indent=2), encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())

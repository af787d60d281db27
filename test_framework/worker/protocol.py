"""The child protocol: every message between the engine and a pytest child, typed, in one place.

Both sides import this module (the child plugin, the zygote's fork server, discovery, the shard
runner), so a message is defined once and encoded and decoded by the same code. Standard library
only: it runs inside the user's pytest.

Wire format: one JSON object per line, `{"event": NAME, ...fields}`. A line that does not decode
is dropped (a worker killed mid-write leaves a torn last line); a `hello` of another protocol
version is an error, since engine and child must come from the same installation.

Child -> engine, on the protocol channel (`TEST_FRAMEWORK_CHANNEL_FD`):
  Hello         once, at configure (again in a forked child, for its own channel)
  Collected     the items this process will run, in order, and their constraints
  CollectFailed a file that failed to collect (or was skipped at module level)
  Result        one finished test: its phases, or for a plain pass only its duration
  Released      the tail a worker gave back for free slots (answer to Release)
  Deps          project files this process imported (for the skip cache)
  Done          the session finished
  Forked, Exited  the zygote's children (only on a zygote's channel), and the base layer's
  Ready         the base layer's module files, once it imported pytest (after its Hello)
Engine -> child, on the same socket, read before each test: Skip, Release.
Engine -> zygote, one datagram each on the command socket (`TEST_FRAMEWORK_ZYGOTE_FD`): Fork;
  and first Mode, to a zygote started before the engine knew it (`TEST_FRAMEWORK_ZYGOTE_ASK`).
Engine -> base layer, the same way (`TEST_FRAMEWORK_BASE_FD`): Layer.

Which test runs right now is not a message but the progress board (board.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

PROTOCOL_VERSION = 5

# The environment of a child: every name starts with the prefix, so a nested run (the engine
# testing itself) strips its parent's before setting its own.
PROTOCOL_ENV_PREFIX = "TEST_FRAMEWORK_"
ENV_CHANNEL = "TEST_FRAMEWORK_CHANNEL_FD"  # the protocol socket's descriptor
ENV_SELECT = "TEST_FRAMEWORK_SELECT"  # JSON file narrowing a worker's collection
ENV_STACKS = "TEST_FRAMEWORK_STACKS"  # file that SIGUSR1 dumps every thread's stack into
ENV_BOARD = "TEST_FRAMEWORK_BOARD"  # the progress board: which test runs, since when
ENV_ZYGOTE = "TEST_FRAMEWORK_ZYGOTE_FD"  # the zygote's command socket
# Set: this zygote was started before the engine knew whether it forks before collecting; it
# waits for a `Mode` command when pytest is about to collect (execution/prestart.py).
ENV_ZYGOTE_ASK = "TEST_FRAMEWORK_ZYGOTE_ASK"
ENV_BASE = "TEST_FRAMEWORK_BASE_FD"  # the base layer's command socket (base_layer.py)
# Set: the zygote forks before collecting and each child collects only its own files (the
# engine knows the tests already, from its collection cache).
ENV_ZYGOTE_EARLY = "TEST_FRAMEWORK_ZYGOTE_EARLY"
# A file naming, one per line, the modules an early zygote imports before it forks: the non-test
# modules the last full collection imported, so a child's narrowed collection starts from the
# same `sys.modules` as pytest's whole one.
ENV_PRELOAD = "TEST_FRAMEWORK_PRELOAD"
# The folder workers write their serialized reports into, when plugins' summaries need them,
# and the summary process's instructions (worker/summary.py).
ENV_REPORTS = "TEST_FRAMEWORK_REPORTS"  # (reports_folder below)
ENV_SUMMARY = "TEST_FRAMEWORK_SUMMARY"
# Set: record what each test file imports and reads (the skip cache's runtime dependencies).
ENV_RECORD_DEPS = "TEST_FRAMEWORK_RECORD_DEPS"
# The summary process's lines around what plugins printed, and its word that one of them
# failed the run.
SUMMARY_BEGIN = "<test_framework: plugin summaries>"
SUMMARY_END = "</test_framework: plugin summaries>"
FAILED_BY_PLUGIN = "<test_framework: a plugin failed the run>"

# The module pytest loads in every child (`-p`).
WORKER_PLUGIN = "test_framework.worker.plugin"


class ProtocolError(ValueError):
    """A child speaks another protocol version: engine and plugin come from different installs."""


def reports_folder(scratch: Path) -> Path:
    """Where a run's workers write their serialized reports, in its scratch folder."""
    return scratch / "reports"


# ---- messages ----------------------------------------------------------------------------------
M = TypeVar("M", bound="Message")


class Message:
    """Base of every message: `EVENT` names it on the wire; `fields` and `from_fields` convert."""

    EVENT: ClassVar[str]

    def fields(self) -> dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def from_fields(cls: type[M], data: Mapping[str, Any]) -> M:
        raise NotImplementedError


_REGISTRY: dict[str, type[Message]] = {}


def _message(cls: type[M]) -> type[M]:
    _REGISTRY[cls.EVENT] = cls
    return cls


@_message
@dataclass(frozen=True, slots=True)
class Hello(Message):
    EVENT: ClassVar[str] = "hello"
    pid: int
    rootdir: str
    args: tuple[str, ...] = ()  # the positional arguments pytest was given (paths, node ids)
    version: int = PROTOCOL_VERSION

    def fields(self) -> dict[str, Any]:
        return {"v": self.version, "pid": self.pid, "rootdir": self.rootdir, "args": self.args}

    @classmethod
    def from_fields(cls, data: Mapping[str, Any]) -> Hello:
        if data.get("v") != PROTOCOL_VERSION:
            raise ProtocolError(
                f"child protocol version {data.get('v')!r}, expected {PROTOCOL_VERSION}: the "
                "worker plugin and the engine come from different installations"
            )
        return cls(int(data["pid"]), str(data["rootdir"]), _strings(data.get("args")))


@_message
@dataclass(frozen=True, slots=True)
class Collected(Message):
    EVENT: ClassVar[str] = "collected"
    nodeids: tuple[str, ...]
    serial: tuple[str, ...] = ()  # tests marked serial: they run alone
    resources: Mapping[str, tuple[str, ...]] | None = None  # test -> named resources it holds
    timeouts: Mapping[str, float] | None = None  # test -> seconds, from @pytest.mark.timeout
    # Project files (and folders, ending in "/") the collection read besides Python source: the
    # collection cache is valid only while they are unchanged.
    read: tuple[str, ...] = ()
    # A whole collection's non-test modules, in import order (what an early zygote preloads).
    modules: tuple[str, ...] = ()
    # Files where a named test was found by its position under another id (ids that embed
    # the time): its item reports the id asked for.
    renamed: tuple[str, ...] = ()
    # What pytest's terminal summary would show, as configured (options and ini `addopts`):
    # `-r` characters, `--durations`, `--durations-min`; and how many items `-k`/`-m` left out.
    reportchars: str = "fE"
    durations: int | None = None
    durations_min: float = 0.005
    deselected: int = 0
    # pytest's --maxfail as configured (command line or ini `addopts`; 0 = none): the worker
    # collects without it and the engine applies it run-wide. `collectors`: how many
    # collectors pytest started in all.
    maxfail: int = 0
    collectors: int = 0
    coverage: bool = False  # pytest-cov measures: the engine prints its combined table
    # Plugins outside pytest whose terminal summary would print: replayed reports feed them.
    summary_plugins: tuple[str, ...] = ()
    # pytest's cache folder (None: the cacheprovider is off): the engine keeps `--lf`'s record
    # there for the whole run, as xdist's controller does; its workers write none.
    pytest_cache: str | None = None

    def fields(self) -> dict[str, Any]:
        return {
            "nodeids": self.nodeids,
            "serial": self.serial,
            "resources": dict(self.resources or {}),
            "timeouts": dict(self.timeouts or {}),
            "read": self.read,
            "modules": self.modules,
            "renamed": self.renamed,
            "reportchars": self.reportchars,
            "durations": self.durations,
            "durations_min": self.durations_min,
            "deselected": self.deselected,
            "maxfail": self.maxfail,
            "collectors": self.collectors,
            "coverage": self.coverage,
            "summary_plugins": self.summary_plugins,
            "pytest_cache": self.pytest_cache,
        }

    @classmethod
    def from_fields(cls, data: Mapping[str, Any]) -> Collected:
        return cls(
            _strings(data["nodeids"]),
            _strings(data.get("serial")),
            {str(n): _strings(r) for n, r in (data.get("resources") or {}).items()},
            {str(n): float(s) for n, s in (data.get("timeouts") or {}).items()},
            _strings(data.get("read")),
            _strings(data.get("modules")),
            _strings(data.get("renamed")),
            str(data.get("reportchars", "fE")),
            None if data.get("durations") is None else int(data["durations"]),
            float(data.get("durations_min", 0.005)),
            int(data.get("deselected") or 0),
            int(data.get("maxfail") or 0),
            int(data.get("collectors") or 0),
            bool(data.get("coverage")),
            _strings(data.get("summary_plugins")),
            None if data.get("pytest_cache") is None else str(data["pytest_cache"]),
        )


@_message
@dataclass(frozen=True, slots=True)
class CollectFailed(Message):
    """A collector that failed (an import error) or was skipped at module level: pytest counts
    it as one error or one skipped 'test' named after the file."""

    EVENT: ClassVar[str] = "collect_failed"
    nodeid: str
    longrepr: str
    skipped: bool = False
    # How many collectors pytest had started when this one failed: with `Collected.collectors`
    # it tells whether pytest would have started another (where --maxfail stops collecting).
    collector: int = 0

    def fields(self) -> dict[str, Any]:
        return {
            "nodeid": self.nodeid,
            "longrepr": self.longrepr,
            "skipped": self.skipped,
            "collector": self.collector,
        }

    @classmethod
    def from_fields(cls, data: Mapping[str, Any]) -> CollectFailed:
        return cls(
            str(data["nodeid"]),
            str(data.get("longrepr") or ""),
            bool(data.get("skipped")),
            int(data.get("collector") or 0),
        )


@dataclass(frozen=True, slots=True)
class Phase:
    """One of a test's reports (setup, call, teardown). `category` is what pytest's own
    `pytest_report_teststatus` said, so the engine counts exactly as pytest does."""

    when: str
    outcome: str
    category: str
    duration: float
    longrepr: str = ""
    sections: tuple[tuple[str, str], ...] = ()
    wasxfail: str | None = None
    where: str = ""  # a skip's "path:line", as pytest's `-rs` line shows it
    # pytest's verbose word for the report where it is not the category's own (a subtest's
    # "SUBFAILED[i] (i=1)", a plugin's word): the short summary line starts with it.
    word: str = ""

    def fields(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "when": self.when,
            "outcome": self.outcome,
            "category": self.category,
            "duration": self.duration,
        }
        if self.where:
            data["where"] = self.where
        if self.word:
            data["word"] = self.word
        if self.longrepr:
            data["longrepr"] = self.longrepr
        if self.sections:
            data["sections"] = self.sections
        if self.wasxfail is not None:
            data["wasxfail"] = self.wasxfail
        return data

    @classmethod
    def from_fields(cls, data: Mapping[str, Any]) -> Phase:
        sections = data.get("sections")
        wasxfail = data.get("wasxfail")
        return cls(
            str(data["when"]),
            str(data["outcome"]),
            str(data.get("category") or ""),
            float(data.get("duration") or 0.0),
            str(data.get("longrepr") or ""),
            tuple((str(a), str(b)) for a, b in sections) if sections else (),
            None if wasxfail is None else str(wasxfail),
            str(data.get("where") or ""),
            str(data.get("word") or ""),
        )

    @property
    def plain(self) -> bool:
        """Passed and said nothing: the phase pytest counts as part of a plain pass."""
        expected = "passed" if self.when == "call" else ""
        return (
            self.outcome == "passed"
            and self.category == expected
            and not self.longrepr
            and not self.sections
            and self.wasxfail is None
            and not self.where
        )


@_message
@dataclass(frozen=True, slots=True)
class Result(Message):
    """One finished test. A plain pass (three silent passing phases) travels as its total
    duration alone (`passed`): most tests, and the cheapest message."""

    EVENT: ClassVar[str] = "result"
    nodeid: str
    started_at: float  # proc.now() on the worker's clock, to place leaked processes
    cpu: float | None = None  # CPU seconds of the worker while the test ran
    max_rss: int | None = None  # the worker's peak RSS so far, bytes
    spawned: tuple[int, ...] = ()  # children the test left running
    passed: float | None = None  # set for a plain pass: its total duration
    phases: tuple[Phase, ...] = ()
    location: tuple[str, int | None, str] | None = None
    # Set when the engine's `Skip` kept the test from running: why (it is not a pytest skip).
    withheld: str | None = None

    def fields(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "nodeid": self.nodeid,
            "t": self.started_at,
            "cpu": self.cpu,
            "maxrss": self.max_rss,
            "spawned": self.spawned,
        }
        if self.withheld is not None:
            data["withheld"] = self.withheld
        if self.passed is not None:
            data["passed"] = self.passed
        else:
            data["phases"] = [phase.fields() for phase in self.phases]
            data["location"] = self.location
        return data

    @classmethod
    def from_fields(cls, data: Mapping[str, Any]) -> Result:
        passed = data.get("passed")
        location = data.get("location")
        return cls(
            nodeid=str(data["nodeid"]),
            started_at=float(data.get("t") or 0.0),
            cpu=_number(data.get("cpu")),
            max_rss=int(data["maxrss"]) if data.get("maxrss") else None,
            spawned=tuple(int(pid) for pid in data.get("spawned") or ()),
            passed=None if passed is None else float(passed),
            phases=tuple(Phase.from_fields(p) for p in data.get("phases") or ()),
            location=(str(location[0]), location[1], str(location[2])) if location else None,
            withheld=None if data.get("withheld") is None else str(data["withheld"]),
        )


@_message
@dataclass(frozen=True, slots=True)
class Warned(Message):
    """A warning pytest recorded (`pytest_warning_recorded`): `message` as pytest's warnings
    summary prints it, `nodeid` the test's ("" at collection), `location` "path:line" where
    there is no test to name."""

    EVENT: ClassVar[str] = "warned"
    nodeid: str
    when: str
    message: str
    location: str = ""

    def fields(self) -> dict[str, Any]:
        return {
            "nodeid": self.nodeid,
            "when": self.when,
            "message": self.message,
            "location": self.location,
        }

    @classmethod
    def from_fields(cls, data: Mapping[str, Any]) -> Warned:
        return cls(
            str(data.get("nodeid") or ""),
            str(data.get("when") or ""),
            str(data.get("message") or ""),
            str(data.get("location") or ""),
        )


@_message
@dataclass(frozen=True, slots=True)
class Released(Message):
    EVENT: ClassVar[str] = "released"
    nodeids: tuple[str, ...]

    def fields(self) -> dict[str, Any]:
        return {"nodeids": self.nodeids}

    @classmethod
    def from_fields(cls, data: Mapping[str, Any]) -> Released:
        return cls(_strings(data.get("nodeids")))


@_message
@dataclass(frozen=True, slots=True)
class Deps(Message):
    """What this process used: the project modules it imported, and, when the engine asked
    (`ENV_RECORD_DEPS`), per test file the names imported while it was collected or run and
    the project files it read (worker/deps.py)."""

    EVENT: ClassVar[str] = "deps"
    files: tuple[str, ...]
    imports: Mapping[str, tuple[str, ...]] | None = None
    reads: Mapping[str, tuple[str, ...]] | None = None

    def fields(self) -> dict[str, Any]:
        return {
            "files": self.files,
            "imports": dict(self.imports or {}),
            "reads": dict(self.reads or {}),
        }

    @classmethod
    def from_fields(cls, data: Mapping[str, Any]) -> Deps:
        imports = {str(f): _strings(n) for f, n in (data.get("imports") or {}).items()}
        reads = {str(f): _strings(p) for f, p in (data.get("reads") or {}).items()}
        return cls(_strings(data.get("files")), imports or None, reads or None)


@_message
@dataclass(frozen=True, slots=True)
class Done(Message):
    EVENT: ClassVar[str] = "done"
    exitstatus: int

    def fields(self) -> dict[str, Any]:
        return {"exitstatus": self.exitstatus}

    @classmethod
    def from_fields(cls, data: Mapping[str, Any]) -> Done:
        return cls(int(data.get("exitstatus") or 0))


@_message
@dataclass(frozen=True, slots=True)
class Forked(Message):
    EVENT: ClassVar[str] = "forked"
    shard: int
    pid: int

    def fields(self) -> dict[str, Any]:
        return {"shard": self.shard, "pid": self.pid}

    @classmethod
    def from_fields(cls, data: Mapping[str, Any]) -> Forked:
        return cls(int(data["shard"]), int(data["pid"]))


@_message
@dataclass(frozen=True, slots=True)
class Exited(Message):
    EVENT: ClassVar[str] = "exited"
    pid: int
    returncode: int

    def fields(self) -> dict[str, Any]:
        return {"pid": self.pid, "returncode": self.returncode}

    @classmethod
    def from_fields(cls, data: Mapping[str, Any]) -> Exited:
        return cls(int(data["pid"]), int(data["returncode"]))


@_message
@dataclass(frozen=True, slots=True)
class Ready(Message):
    """The base layer imported pytest and waits for `Layer` commands; these files are what it
    holds (a change to one makes it stale)."""

    EVENT: ClassVar[str] = "ready"
    modules: tuple[str, ...]

    def fields(self) -> dict[str, Any]:
        return {"modules": self.modules}

    @classmethod
    def from_fields(cls, data: Mapping[str, Any]) -> Ready:
        return cls(_strings(data.get("modules")))


# ---- commands ----------------------------------------------------------------------------------
@_message
@dataclass(frozen=True, slots=True)
class Skip(Message):
    """The circuit breaker: tests of these files are not run, for `reason`. The worker keeps
    them from running (through pytest's skip, so fixtures stay consistent) and reports each as
    withheld, which the engine reports as not run, never as a pytest skip."""

    EVENT: ClassVar[str] = "skip"
    files: tuple[str, ...]
    reason: str

    def fields(self) -> dict[str, Any]:
        return {"files": self.files, "reason": self.reason}

    @classmethod
    def from_fields(cls, data: Mapping[str, Any]) -> Skip:
        return cls(_strings(data["files"]), str(data["reason"]))


@_message
@dataclass(frozen=True, slots=True)
class Release(Message):
    """Work stealing: keep the test about to run and the next; give back pieces/(pieces+1) of
    the tests after them, from the end, answering `Released`."""

    EVENT: ClassVar[str] = "release"
    pieces: int = 1

    def fields(self) -> dict[str, Any]:
        return {"pieces": self.pieces}

    @classmethod
    def from_fields(cls, data: Mapping[str, Any]) -> Release:
        return cls(max(1, int(data.get("pieces") or 1)))


@_message
@dataclass(frozen=True, slots=True)
class Fork(Message):
    """Engine -> zygote: fork a worker for one shard; the datagram carries the child's end of its
    protocol socket (SCM_RIGHTS)."""

    EVENT: ClassVar[str] = "fork"
    shard: int
    select: str  # path of the shard's selection file
    output: str  # the child's stdout and stderr
    stacks: str
    board: str
    # A child of an early zygote collects the whole selection, as pytest would, instead of only
    # its own files (then narrows to its selection).
    full: bool = False

    def fields(self) -> dict[str, Any]:
        return {
            "shard": self.shard,
            "select": self.select,
            "output": self.output,
            "stacks": self.stacks,
            "board": self.board,
            "full": self.full,
        }

    @classmethod
    def from_fields(cls, data: Mapping[str, Any]) -> Fork:
        return cls(
            int(data["shard"]),
            str(data["select"]),
            str(data["output"]),
            str(data["stacks"]),
            str(data["board"]),
            bool(data.get("full")),
        )


@_message
@dataclass(frozen=True, slots=True)
class Mode(Message):
    """Engine -> a zygote started early: fork before collecting (`early`, after importing the
    modules listed in the `preload` file) or collect everything first."""

    EVENT: ClassVar[str] = "mode"
    early: bool
    preload: str = ""

    def fields(self) -> dict[str, Any]:
        return {"early": self.early, "preload": self.preload}

    @classmethod
    def from_fields(cls, data: Mapping[str, Any]) -> Mode:
        return cls(bool(data["early"]), str(data.get("preload") or ""))


@_message
@dataclass(frozen=True, slots=True)
class Layer(Message):
    """Engine -> base layer: fork a process that becomes `python -m pytest <args>` in `cwd` with
    `env`. The datagram carries its output file, then one descriptor per name in `fd_names`
    (SCM_RIGHTS); the child sets each name in its environment to its descriptor's number."""

    EVENT: ClassVar[str] = "layer"
    request: int
    args: tuple[str, ...]
    cwd: str
    env: Mapping[str, str]
    fd_names: tuple[str, ...]

    def fields(self) -> dict[str, Any]:
        return {
            "request": self.request,
            "args": self.args,
            "cwd": self.cwd,
            "env": dict(self.env),
            "fd_names": self.fd_names,
        }

    @classmethod
    def from_fields(cls, data: Mapping[str, Any]) -> Layer:
        env = data["env"]
        if not isinstance(env, dict):
            raise TypeError("env")
        return cls(
            int(data["request"]),
            _strings(data["args"]),
            str(data["cwd"]),
            {str(k): str(v) for k, v in env.items()},
            _strings(data["fd_names"]),
        )


# ---- encoding ----------------------------------------------------------------------------------
def encode(message: Message) -> bytes:
    """One line of JSON, newline included."""
    data = {"event": message.EVENT, **message.fields()}
    return (json.dumps(data, default=str) + "\n").encode()


def decode(data: object) -> Message | None:
    """A decoded JSON value as a message; None for anything that is not one (an unknown event,
    a malformed field). A `hello` of another version raises ProtocolError."""
    if not isinstance(data, dict):
        return None
    kind = _REGISTRY.get(data.get("event"))  # type: ignore[arg-type]
    if kind is None:
        return None
    try:
        return kind.from_fields(data)
    except ProtocolError:
        raise
    except (KeyError, TypeError, ValueError, IndexError):
        return None


def decode_line(line: bytes) -> Message | None:
    try:
        return decode(json.loads(line))
    except ValueError as exc:
        if isinstance(exc, ProtocolError):
            raise
        return None


def decode_lines(lines: Sequence[bytes]) -> list[Message]:
    """Many lines in one JSON parse (a batch of results costs one call, not one per test); a
    batch with a bad line falls back to one parse per line, dropping the bad one."""
    if len(lines) > 1:
        try:
            values = json.loads(b"[" + b",".join(lines) + b"]")
        except ValueError:
            values = None
        if isinstance(values, list):
            return [m for m in map(decode, values) if m is not None]
    return [m for m in map(decode_line, lines) if m is not None]


def _strings(values: Iterable[object] | None) -> tuple[str, ...]:
    return tuple(str(v) for v in values or ())


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, (int, float)) else None

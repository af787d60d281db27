"""pytest's terminal-summary sections, rebuilt from the run's results and warnings: the warnings
summary, `--durations`' slowest durations and the `-r` short test summary, worded and ordered
as pytest's terminal reporter words them, so a pytest user reads what they know.

Pure text: the console reporter decides where they go.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

from ..events import WarningRecorded
from ..models import Outcome, PhaseReport, Terminal, TestResult

WARNINGS_DOCS = "-- Docs: https://docs.pytest.org/en/stable/how-to/capture-warnings.html"
# The engine's own verdicts: listed in the short summary whatever `-r` says.
ENGINE_WORDS = {
    Outcome.FLAKY: "FLAKY",
    Outcome.CRASHED: "CRASHED",
    Outcome.TIMEOUT: "TIMEOUT",
}


def report_chars(raw: str, *, warnings_disabled: bool = False) -> str:
    """pytest's `getreportopt`: aliases folded, `a` and `A` expanded, `N` clears."""
    chars = ""
    for char in raw:
        char = char.lower() if char in "FS" else char
        if char == "a":
            chars = "sxXEf"
        elif char == "A":
            chars = "PpsxXEf"
        elif char == "N":
            chars = ""
        elif char not in chars:
            chars += char
    if not warnings_disabled and "w" not in chars:
        chars = "w" + chars
    elif warnings_disabled:
        chars = chars.replace("w", "")
    return chars


def unique_warnings(warnings: Iterable[WarningRecorded]) -> list[WarningRecorded]:
    """One per (test, message, place): a file collected by several workers warns once."""
    seen: dict[tuple[str, str, str, str], WarningRecorded] = {}
    for warning in warnings:
        seen.setdefault((warning.nodeid, warning.when, warning.message, warning.location), warning)
    return list(seen.values())


def warnings_summary(warnings: Sequence[WarningRecorded]) -> list[str]:
    """pytest's `summary_warnings`: grouped by message, each group under the places it came
    from (counted per file past ten of them), the message indented below."""
    groups: dict[str, list[WarningRecorded]] = {}
    for warning in warnings:
        groups.setdefault(warning.message, []).append(warning)
    lines: list[str] = []
    for message, group in groups.items():
        places = [w.nodeid or w.location for w in group if w.nodeid or w.location]
        if len(places) >= 10:
            per_file = Counter(p.split("::", 1)[0] for p in places)
            places = [f"{f}: {n} warning{'s' if n > 1 else ''}" for f, n in per_file.items()]
        if places:
            lines.extend(places)
            lines.append("\n".join("  " + line for line in message.splitlines()).rstrip())
        else:
            lines.append(message.rstrip())
        lines.append("")
    lines.append(WARNINGS_DOCS)
    return lines


def slowest_durations(
    results: Iterable[TestResult], terminal: Terminal, *, verbose: int
) -> tuple[str, list[str]]:
    """pytest's `--durations` section: its title and lines, every phase of every test."""
    phases = sorted(
        (r for result in results for r in result.reports), key=lambda r: r.duration, reverse=True
    )
    wanted = terminal.durations
    title = f"slowest {wanted} durations" if wanted else "slowest durations"
    if wanted:
        phases = phases[:wanted]
    lines = []
    for index, phase in enumerate(phases):
        if verbose < 2 and phase.duration < terminal.durations_min:
            lines.append("")
            lines.append(
                f"({len(phases) - index} durations < {terminal.durations_min:g}s hidden.  "
                "Use -vv to show these durations.)"
            )
            break
        lines.append(f"{phase.duration:02.2f}s {phase.when:<8} {phase.nodeid}")
    return title, lines


def short_summary(results: Sequence[TestResult], chars: str) -> list[str]:
    """pytest's short test summary for `chars` (in their order), then the engine's own
    verdicts (flaky, crashed, timed out), which pytest has no letter for."""
    lines: list[str] = []
    for char in chars:
        if char in "fE":
            stat, word = ("failed", "FAILED") if char == "f" else ("error", "ERROR")
            lines.extend(
                f"{report.word or word} {result.nodeid}{reason(result, report)}"
                for result, report in _reports(results, stat)
            )
        elif char == "s":
            lines.extend(_skipped(results))
        elif char in "xX":
            stat, word = ("xfailed", "XFAIL") if char == "x" else ("xpassed", "XPASS")
            for result, report in _reports(results, stat):
                why = f" - {report.wasxfail}" if report.wasxfail else ""
                lines.append(f"{word} {result.nodeid}{why}")
        elif char == "p":  # ("P" is pytest's PASSES section, not a summary line)
            lines.extend(f"PASSED {nodeid}" for nodeid in _passed(results))
    lines.extend(
        f"{ENGINE_WORDS[r.outcome]} {r.nodeid}{reason(r, None)}"
        for r in results
        if r.outcome in ENGINE_WORDS
    )
    return lines


def _passed(results: Iterable[TestResult]) -> list[str]:
    """The tests pytest lists as PASSED: a plain pass travels without its reports."""
    found = []
    for result in results:
        if result.outcome is Outcome.PASSED and not result.reports:
            found.append(result.nodeid)
        elif result.outcome not in ENGINE_WORDS:
            found.extend(result.nodeid for r in result.reports if r.category == "passed")
    return found


def _reports(results: Iterable[TestResult], stat: str) -> list[tuple[TestResult, PhaseReport]]:
    """Each result's reports pytest counts under `stat` (a failed call and an errored teardown
    of one test are one FAILED and one ERROR line, as in pytest)."""
    found: list[tuple[TestResult, PhaseReport]] = []
    for result in results:
        if result.outcome in ENGINE_WORDS:
            continue
        found.extend((result, r) for r in result.reports if r.category == stat)
    return found


def _skipped(results: Iterable[TestResult]) -> list[str]:
    """pytest's folded skips: one line per (place, reason) with how many skipped there."""
    folded: Counter[tuple[str, str]] = Counter()
    for _result, report in _reports(results, "skipped"):
        text = report.longrepr.removeprefix("Skipped: ")
        folded[(report.where or report.nodeid.split("::", 1)[0], text)] += 1
    return [f"SKIPPED [{count}] {where}: {text}" for (where, text), count in folded.items()]


def reason(result: TestResult, report: PhaseReport | None) -> str:
    """ " - " and the line that says why: the report's last `E` line, the engine's note."""
    line = last_line(report.longrepr if report is not None else result.longrepr)
    if result.message and line and result.outcome in (Outcome.FAILED, Outcome.ERROR):
        return f" - {line} ({result.message})"
    text = result.message or line
    return f" - {text}" if text else ""


def last_line(text: str, limit: int | None = 200) -> str:
    """The error a report ends in: its first `E ` line, else its last line (cut at `limit`)."""
    for line in text.strip().splitlines():
        if line.startswith("E "):
            return line[1:].strip()[:limit]
    lines = text.strip().splitlines()
    return lines[-1][:limit] if lines else ""

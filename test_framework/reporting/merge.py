"""CI shards' run documents, checked and merged.

`verify` answers "did the shards together run every collected test exactly once?": the
documents must be the N parts of one split (`shard_of` K/N, each K once, one N), agree on the
selection (`shard_selection`: its size and digest), and their tests must be disjoint and hash
to that selection; a test reported `not_run` (the run stopped before it) did not run.

`merge` makes one document of them, which every format renders again: tests in shard order,
collection errors (every shard reports them: each collected) once, each machine's worker
slots as lanes of their own, pytest's counts summed (minus the repeated collection errors;
`deselected` as one shard saw it, minus the other shards' tests), the metrics recomputed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import replace

from ..ci_shards import selection_digest
from .run_document import RunDocument, TestRecord, metrics

_WORST_FIRST = (3, 4, 2)  # internal error, usage error, interrupted: a merged run is that


def verify(documents: Sequence[RunDocument]) -> list[str]:
    """What is wrong with these shard reports as one split; empty when they cover it."""
    if not documents:
        return ["no shard reports given"]
    problems: list[str] = []
    parts = [d.shard_of for d in documents]
    if any(part is None for part in parts):
        missing = [d.run_id for d in documents if d.shard_of is None]
        return [f"not a shard's report (run without --shard): run {', '.join(missing)}"]
    totals = {part[1] for part in parts if part}
    if len(totals) != 1:
        return [f"the reports come from different splits: N = {sorted(totals)}"]
    (total,) = totals
    seen = Counter(part[0] for part in parts if part)
    absent = [k for k in range(1, total + 1) if k not in seen]
    if absent:
        problems.append(f"missing shard report(s): {', '.join(f'{k}/{total}' for k in absent)}")
    twice = sorted(k for k, n in seen.items() if n > 1)
    if twice:
        problems.append(f"shard report(s) given twice: {', '.join(f'{k}/{total}' for k in twice)}")
    selections = {d.shard_selection for d in documents}
    if len(selections) != 1 or None in selections:
        problems.append(
            "the shards collected different selections (another tree, another store's "
            "durations, other options): their split is not one split"
        )
        return problems
    (selection,) = selections
    assert selection is not None
    owner: dict[str, int] = {}
    for document in documents:
        assert document.shard_of is not None
        for test in document.tests:
            if "::" not in test.nodeid:
                continue  # a collection error: every shard reports it
            if test.nodeid in owner:
                problems.append(
                    f"{test.nodeid} ran on shard {owner[test.nodeid]}/{total} and on "
                    f"{document.shard_of[0]}/{total}"
                )
            owner[test.nodeid] = document.shard_of[0]
            if test.outcome == "not_run":
                problems.append(f"{test.nodeid} did not run (shard {document.shard_of[0]}/{total})")
    if not absent and not twice and selection_digest(list(owner)) != selection:
        count = selection[0]
        problems.append(
            f"the shards' tests are not the selection: {len(owner)} reported, {count} collected"
        )
    return problems


def merge(documents: Sequence[RunDocument]) -> RunDocument:
    ordered = sorted(documents, key=lambda d: d.shard_of or (0, 0))
    tests: list[TestRecord] = []
    shards = []
    seen_errors: set[str] = set()
    repeated: Counter[str] = Counter()
    offset = 0
    for document in ordered:
        for test in document.tests:
            if "::" not in test.nodeid and test.outcome == "error":
                if test.nodeid in seen_errors:
                    repeated["error"] += 1
                    continue
                seen_errors.add(test.nodeid)
            slot = None if test.slot is None else test.slot + offset
            tests.append(replace(test, slot=slot))
        shards += [replace(s, slot=s.slot + offset) for s in document.shards]
        lanes = [s.slot for s in document.shards]
        lanes += [t.slot for t in document.tests if t.slot is not None]
        offset += max(lanes, default=-1) + 1
    summary: Counter[str] = Counter()
    for document in ordered:
        summary.update(document.summary)
    summary.subtract(repeated)
    if "deselected" in summary:
        first = ordered[0]
        others = sum(len(d.tests) for d in ordered[1:])
        summary["deselected"] = max(0, first.summary.get("deselected", 0) - others)
    summary = Counter({word: n for word, n in summary.items() if n > 0})
    wall = max(d.metrics.wall for d in ordered)
    merged_metrics = metrics(
        tests,
        shards,
        {"wall": wall},
        max(d.duration for d in ordered),
        sum(d.metrics.peak_slots for d in ordered),
        _peak_rss(ordered),
    )
    return RunDocument(
        run_id="+".join(d.run_id for d in ordered),
        created=max(d.created for d in ordered),
        duration=max(d.duration for d in ordered),
        exit_code=merged_exit_code([d.exit_code for d in ordered]),
        interrupted=any(d.interrupted for d in ordered),
        project_root=ordered[0].project_root,
        profile=ordered[0].profile,
        categories=ordered[0].categories,
        summary=dict(summary),
        tests=tuple(tests),
        metrics=merged_metrics,
        timings={"wall": wall},
        shards=tuple(shards),
        capacity=(),
        warnings=tuple(w for d in ordered for w in d.warnings),
        notes=tuple(n for d in ordered for n in d.notes),
        argv=ordered[0].argv,
        started=min((d.started for d in ordered if d.started is not None), default=None),
        shard_of=None,
        shard_selection=ordered[0].shard_selection,
    )


def merged_exit_code(codes: Sequence[int]) -> int:
    """One exit code for runs that together are one: the worst trouble first (internal error,
    usage error, interrupted), then failures; "no tests" only when no shard had any."""
    for code in _WORST_FIRST:
        if code in codes:
            return code
    if 1 in codes:
        return 1
    return 5 if codes and all(code == 5 for code in codes) else 0


def _peak_rss(documents: Sequence[RunDocument]) -> int | None:
    peaks = [d.metrics.peak_worker_rss_mb for d in documents if d.metrics.peak_worker_rss_mb]
    return int(max(peaks) * 2**20) if peaks else None

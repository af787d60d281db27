#!/usr/bin/env python
"""How the HTML report scales: render a synthetic run of N tests, and time opening it in headless
Chromium (when installed) until its script has drawn the page.

    python scripts/html_report_scale.py [--tests 50000] [--slots 8] [--failures 200] [--out DIR]

Prints the render time, the file's size and Chromium's time to a drawn page (the process's
wall time for `--dump-dom`, minus the same for an empty page: the browser's own start-up).
"""

from __future__ import annotations

import argparse
import random
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from test_framework.reporting.html_report import render_html
from test_framework.reporting.run_document import (
    RunDocument,
    ShardRecord,
    TestRecord,
    metrics,
)

T0 = 1_700_000_000.0


def synthetic(tests: int, slots: int, failures: int, seed: int = 7) -> RunDocument:
    rng = random.Random(seed)
    clock = [T0 + 1.0] * slots
    records = []
    shards = []
    per_shard = 50
    for shard in range(0, tests, per_shard):
        slot = min(range(slots), key=clock.__getitem__)
        start = clock[slot]
        for i in range(shard, min(tests, shard + per_shard)):
            duration = rng.lognormvariate(-4, 1.2)
            failed = i % max(1, tests // max(1, failures)) == 0 and failures > 0
            records.append(
                TestRecord(
                    f"tests/pkg_{i // 1000:03}/test_mod_{i // 50:04}.py::test_case[{i}]",
                    "failed" if failed else "passed",
                    duration,
                    shard=shard // per_shard,
                    slot=slot,
                    start=clock[slot],
                    end=clock[slot] + duration,
                    longrepr="E   assert 1 == 2\n" * 20 if failed else "",
                )
            )
            clock[slot] += duration
        shards.append(ShardRecord(shard // per_shard, slot, start, clock[slot], per_shard))
    wall = max(clock) - T0
    tests_t = tuple(records)
    return RunDocument(
        run_id="scale",
        created=T0 + wall,
        duration=wall,
        exit_code=1 if failures else 0,
        interrupted=False,
        project_root="/scale",
        profile="ultra_fast",
        categories=("all",),
        summary={"passed": tests - failures, "failed": failures},
        tests=tests_t,
        metrics=metrics(tests_t, shards, {"wall": wall}, wall, slots),
        shards=tuple(shards),
        started=T0,
    )


def browser_seconds(chromium: str, page: Path) -> float:
    started = time.perf_counter()
    subprocess.run(
        [chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--dump-dom", page.as_uri()],
        capture_output=True,
        check=True,
        timeout=300,
    )
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tests", type=int, default=50_000)
    parser.add_argument("--slots", type=int, default=8)
    parser.add_argument("--failures", type=int, default=200)
    parser.add_argument("--out", type=Path)
    ns = parser.parse_args()
    out = ns.out or Path(tempfile.mkdtemp(prefix="html-scale-"))
    out.mkdir(parents=True, exist_ok=True)
    document = synthetic(ns.tests, ns.slots, ns.failures)
    started = time.perf_counter()
    html = render_html(document)
    rendered = time.perf_counter() - started
    page = out / "report.html"
    page.write_text(html, encoding="utf-8")
    print(f"{ns.tests} tests: rendered in {rendered:.2f}s, {len(html.encode()) / 2**20:.1f} MiB")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        print("no chromium: the browser's time is not measured")
        return 0
    empty = out / "empty.html"
    empty.write_text("<!doctype html><title>empty</title>", encoding="utf-8")
    base = min(browser_seconds(chromium, empty) for _ in range(3))
    opened = min(browser_seconds(chromium, page) for _ in range(3))
    print(f"chromium: {opened:.2f}s to a drawn page, {base:.2f}s for an empty one: ")
    print(f"  the report's own cost {opened - base:.2f}s (best of 3)")
    print(f"page: {page}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Simulator benchmark: events/s that ``rwi-etl simulate --out FILE`` generates, per dialect,
against a baseline measured in the same run.

    .venv/bin/python bench/bench_simulate.py [--calls 10000] [--seed 7]

Each phase runs in its own process:

- ``current`` / ``v1.0``: the simulator writing every webhook body to a file (model, render,
  envelope, write; what ``rwi-etl simulate --out`` times), without the ground truth;
- ``baseline``: the bodies ``current`` wrote, parsed back into dicts beforehand, then only
  ``orjson.dumps`` and the same buffered writes — the cost of serializing and writing these
  events at all, without deciding what happens in the contact centre;
- ``truth``: the ground-truth rows of the ``current`` run (written after the bodies).

Rates are given per wall-clock second and per CPU second of the process (the second is the
steadier one on a shared machine).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import orjson  # noqa: E402

from bench.summary import Figure, add_argument, run_phase, write  # noqa: E402
from connectors.simulator.config import DEFAULT_START, SimConfig  # noqa: E402
from connectors.simulator.report import write_truth  # noqa: E402
from connectors.simulator.runner import FLUSH_EVERY, RunOptions, build, run  # noqa: E402
from connectors.simulator.timefmt import parse_start  # noqa: E402

GOAL = 100_000


def _config(dialect: str, calls: int, seed: int) -> SimConfig:
    return SimConfig(dialect=dialect, seed=seed, calls=calls, start_us=parse_start(DEFAULT_START))


def _simulate(dialect: str, calls: int, seed: int, out: Path) -> tuple[int, int]:
    result = run(_config(dialect, calls, seed), RunOptions(out=out, progress=False))
    return int(result.summary["events_total"]), int(result.summary["bodies_written"])


def _baseline(source: Path, out: Path) -> tuple[int, int, float, float]:
    """orjson.dumps + write of the bodies in ``source``; returns its own wall and CPU time."""
    with source.open("rb") as fh:
        bodies = [json.loads(line) for line in fh]
    dumps = orjson.dumps
    wall, cpu = time.perf_counter(), time.process_time()
    with out.open("wb", buffering=1 << 20) as fh:
        for i in range(0, len(bodies), FLUSH_EVERY):
            fh.write(b"\n".join([dumps(b) for b in bodies[i:i + FLUSH_EVERY]]))
            fh.write(b"\n")
    return len(bodies), len(bodies), time.perf_counter() - wall, time.process_time() - cpu


def _truth(calls: int, seed: int, work: Path) -> tuple[int, int, float, float]:
    """The ``current`` run again (untimed), then its truth file alone."""
    multi = build(_config("current", calls, seed), RunOptions())
    for _ in multi.body_batches():
        pass
    wall, cpu = time.perf_counter(), time.process_time()
    rows = write_truth(work / "truth.jsonl", multi.sims)
    return rows, rows, time.perf_counter() - wall, time.process_time() - cpu


def phase(name: str, calls: int, seed: int, work: Path) -> dict[str, Any]:
    """Run one phase in this process; return its measurements."""
    if name == "baseline":
        events, bodies, wall_s, cpu_s = _baseline(work / "current.jsonl", work / "baseline.jsonl")
    elif name == "truth":
        events, bodies, wall_s, cpu_s = _truth(calls, seed, work)
    else:
        wall, cpu = time.perf_counter(), time.process_time()
        events, bodies = _simulate(name, calls, seed, work / f"{name}.jsonl")
        wall_s, cpu_s = time.perf_counter() - wall, time.process_time() - cpu
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {"phase": name, "events": events, "bodies": bodies, "wall_s": wall_s,
            "cpu_s": cpu_s, "peak_rss_mb": usage.ru_maxrss / 1024}


def _child(args: list[str]) -> dict[str, Any]:
    return run_phase(__file__, args, REPO)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=10_000, help="call arrivals (default 10000)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--phase", help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    add_argument(parser)
    args = parser.parse_args()
    if args.phase:
        print(json.dumps(phase(args.phase, args.calls, args.seed, args.work)))
        return 0

    with tempfile.TemporaryDirectory(prefix="rwi-bench-sim-") as tmp:
        common = ["--calls", str(args.calls), "--seed", str(args.seed), "--work", tmp]
        results = [_child([*common, "--phase", name])
                   for name in ("current", "v1.0", "baseline", "truth")]
    write(args.summary, _report(results, args.calls))
    return 0


def _report(results: list[dict[str, Any]], calls: int) -> list[Figure]:
    baseline = next(r for r in results if r["phase"] == "baseline")
    base_wall = baseline["events"] / baseline["wall_s"]
    base_cpu = baseline["events"] / baseline["cpu_s"]
    print(f"{calls:,} calls per dialect")
    print(f"{'phase':<10} {'events':>9} {'wall s':>7} {'ev/s':>9} {'ev/CPU-s':>9} "
          f"{'x base':>7} {'x (CPU)':>8} {'peak RSS':>9}")
    for r in results:
        wall = r["events"] / r["wall_s"] if r["wall_s"] else 0.0
        cpu = r["events"] / r["cpu_s"] if r["cpu_s"] else 0.0
        name = "truth rows" if r["phase"] == "truth" else r["phase"]
        print(f"{name:<10} {r['events']:>9,} {r['wall_s']:>7.2f} {wall:>9,.0f} {cpu:>9,.0f} "
              f"{wall / base_wall:>7.2f} {cpu / base_cpu:>8.2f} {r['peak_rss_mb']:>7.0f}MB")
    figures: list[Figure] = []
    for dialect in ("current", "v1.0"):
        r = next(r for r in results if r["phase"] == dialect)
        wall, cpu = r["events"] / r["wall_s"], r["events"] / r["cpu_s"]
        print(f"\nsimulate --dialect {dialect} --out: {wall:,.0f} events/s wall, {cpu:,.0f} per "
              f"CPU-s (goal ≥ {GOAL:,}); {wall / base_wall:.2f}× the orjson dumps+write baseline",
              end="")
        figures.append(Figure(f"simulate --out, {dialect}", f"{wall:,.0f} events/s",
                              f"orjson dump + write {base_wall:,.0f}/s", wall / base_wall,
                              f"≥ {GOAL:,} ev/s", wall >= GOAL))
    print()
    return figures


if __name__ == "__main__":
    sys.exit(main())

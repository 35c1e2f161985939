"""Every benchmark in one go, then one table of figures, baselines, ratios and goals.

Each script runs in its own process with its own output shown as it goes. Unless
``KAFKA_BOOTSTRAP_SERVERS`` is set, one local Kafka broker is started for all of them (on
free loopback ports, or ``RWI_KAFKA_PORT`` / ``RWI_KAFKA_CONTROLLER_PORT``) and stopped at
the end. Freshness is measured by a test that drives
``dagster dev`` (``pytest tests/dagster/test_ui.py -k catches_up -s``), not here.

    .venv/bin/python bench/run_all.py [--quick] [--only simulate,ingest,compact,analytics]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from bench.bench_ingest import kafka  # noqa: E402
from bench.summary import Figure, read  # noqa: E402

# name -> (script, full-size arguments, --quick arguments)
BENCHES: dict[str, tuple[str, list[str], list[str]]] = {
    "simulate": ("bench_simulate.py", [], ["--calls", "2000"]),
    "ingest": ("bench_ingest.py", [], ["--seconds", "2", "--ws-events", "5000"]),
    "compact": ("bench_compact.py", [], ["--events", "100000"]),
    "analytics": ("bench_analytics.py", [], ["--events", "1000000", "--repeat", "1"]),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="small sizes (a smoke run; the goals are for the full sizes)")
    parser.add_argument("--only", default=",".join(BENCHES),
                        help=f"comma-separated subset of {', '.join(BENCHES)}")
    args = parser.parse_args()
    chosen = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in chosen if n not in BENCHES]
    if unknown or not chosen:
        parser.error(f"--only takes names from {', '.join(BENCHES)}")
    figures: list[tuple[str, Figure]] = []
    failed: list[str] = []
    needs_kafka = bool({"ingest", "compact"} & set(chosen))
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="rwi-bench-all-"))
        env = dict(os.environ)
        if needs_kafka:
            env["KAFKA_BOOTSTRAP_SERVERS"] = stack.enter_context(kafka())
        for name in chosen:
            script, full, quick = BENCHES[name]
            out = Path(tmp) / f"{name}.json"
            print(f"\n== {name}: bench/{script}", flush=True)
            started = time.monotonic()
            code = subprocess.run([sys.executable, str(HERE / script),
                                   *(quick if args.quick else full), "--summary", str(out)],
                                  env=env, check=False).returncode
            print(f"-- {name}: exit {code} after {time.monotonic() - started:.0f}s", flush=True)
            if code != 0 or not out.exists():
                failed.append(name)
                continue
            figures += [(name, f) for f in read(out)]
    print("\n| bench | measure | measured | baseline in the same run | ratio | goal | met |")
    print("|---|---|---|---|---:|---|---|")
    for name, f in figures:
        ratio = f"{f.ratio:.2f}×" if f.ratio is not None else "—"
        met = "—" if f.met is None else ("yes" if f.met else "no")
        print(f"| {name} | {f.measure} | {f.value} | {f.baseline} | {ratio} | {f.goal} | {met} |")
    if args.quick:
        print("(--quick: small sizes; the goals apply to the full-size runs)")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

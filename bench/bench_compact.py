"""Compaction benchmark: Kafka → Parquet events/s per process, against baselines in the same run.

    .venv/bin/python bench/bench_compact.py [--events 400000] [--bootstrap HOST:PORT]

Produces ``--events`` real RWI events (encoded by the ingest path) to fresh topics, then runs
each phase in its own process so each peak RSS is its own:

- ``read``: the bounded Kafka read alone (aiokafka, manual assignment), nothing decoded;
- ``decode``: the same read plus the record-by-record decode every other component uses
  (``pipelines.avro.decode``, fastavro) — the decode-only baseline;
- ``compact``: the whole Kafka → Parquet path (columnar decode, Arrow, zstd Parquet, fsync,
  atomic rename, manifest commit per batch), at two batch sizes to show that memory follows
  the batch size, not the backlog;
- ``warehouse``: loading the lake into DuckDB ``raw.*`` (a separate step of the same run).

Rates are given per wall-clock second and per CPU second of the process (the second is the
steadier one on a shared machine). The broker is ``--bootstrap`` or the configured one
(``rwi-etl kafka up`` starts the project's own); the bench topics are deleted afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import shutil
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.summary import Figure, add_argument, run_phase, write  # noqa: E402
from pipelines import avro  # noqa: E402
from pipelines.catalog import all_topics  # noqa: E402
from pipelines.compact import CompactSettings, current_specs, run_compact  # noqa: E402
from pipelines.ingest import BodyConverter  # noqa: E402
from pipelines.kafka_read import (  # noqa: E402
    ReadLimits,
    open_consumer,
    plan_ranges,
    read_range,
    stop_consumer,
    topic_partitions,
)
from pipelines.settings import load_settings  # noqa: E402
from pipelines.topics import delete_topics, ensure_topics, probe_cluster  # noqa: E402

TYPES = ("call_created", "call_ringing", "call_answered", "call_bridged", "call_hangup",
         "media_hold_started", "dtmf", "record_started", "record_stopped", "ivr_node_entered",
         "ivr_node_exited", "queue_joined", "queue_agent_connected", "agent_state_changed",
         "transcript_segment", "conference_member_joined")


def _bodies(count: int) -> list[bytes]:
    start = datetime(2026, 8, 22, 9, tzinfo=UTC)
    out = []
    for i in range(count):
        event_type = TYPES[i % len(TYPES)]
        call = f"call-{i // 9:08d}"
        when = start + timedelta(milliseconds=137 * i)
        event: dict[str, Any] = {
            "event_type": event_type, "call_id": call, "session_id": f"sess-{i // 27}",
            "caller": f"sip:{1000 + i % 500}@pbx.example", "callee": "sip:8000@pbx.example",
            "direction": "inbound", "trunk": "carrier-a", "agent_id": f"agent-{i % 40}",
            "queue_id": "support", "node_id": f"n{i % 6}", "digits": str(i % 10),
            "reason": "caller", "sip_status": 200, "routing_path": ["ivr", "queue", "agent"],
            "sip_headers": {"X-Campaign": "spring"}, "custom": {"i": i},
        }
        out.append(json.dumps({"rwi": "1.0", "timestamp": when.isoformat(), "call_id": call,
                               "event_type": event_type, "event": event}).encode())
    return out


def produce(bootstrap: str, prefix: str, events: int) -> int:
    """Encode a few thousand distinct events with the ingest path and produce ``events``."""
    from aiokafka import AIOKafkaProducer

    converter = BodyConverter("bench", prefix)
    received = datetime(2026, 8, 22, 9, 30, tzinfo=UTC)
    templates = [m for raw in _bodies(min(events, 8000))
                 for m in converter.convert(raw, source="webhook", received_at=received).messages]

    async def run() -> None:
        await ensure_topics(bootstrap, all_topics(prefix), 3, 1, 24 * 3600 * 1000)
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20,
                                    max_batch_size=1 << 20, acks=1)
        await producer.start()
        try:
            pending = []
            for i in range(events):
                m = templates[i % len(templates)]
                pending.append(await producer.send(m.topic, m.value, key=m.key))
                if len(pending) >= 20_000:
                    await asyncio.gather(*pending)
                    pending = []
            await asyncio.gather(*pending)
        finally:
            await producer.stop()

    asyncio.run(run())
    return events


async def _read(bootstrap: str, prefix: str, decode: bool) -> int:
    store = avro.SchemaStore([spec.schema for spec in current_specs().values()])
    limits = ReadLimits()
    consumer = await open_consumer(bootstrap, limits)
    count = 0
    try:
        ranges = await plan_ranges(
            consumer, await topic_partitions(bootstrap, all_topics(prefix)), {})
        for prange in ranges:
            async for batch in read_range(consumer, prange, limits):
                if decode:
                    for value in batch.values:
                        avro.decode(value, store)
                count += len(batch)
    finally:
        await stop_consumer(consumer)
    return count


def phase(name: str, bootstrap: str, prefix: str, data_dir: Path, batch: int) -> dict[str, Any]:
    """Run one phase in this process; return its measurements."""
    settings = load_settings(environ={"KAFKA_BOOTSTRAP_SERVERS": bootstrap,
                                      "RWI_TOPIC_PREFIX": prefix, "RWI_DATA_DIR": str(data_dir)})
    wall, cpu = time.perf_counter(), time.process_time()
    if name in ("read", "decode"):
        events = asyncio.run(_read(bootstrap, prefix, decode=name == "decode"))
    elif name == "compact":
        summary = run_compact(settings, CompactSettings(max_batch_messages=batch,
                                                        warehouse=False, publish=False))
        events = summary.messages
    elif name == "warehouse":
        summary = run_compact(settings, CompactSettings(publish=False))
        events = sum(summary.warehouse_rows.values())
    else:
        raise SystemExit(f"unknown phase {name}")
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {"phase": name, "events": events, "wall_s": time.perf_counter() - wall,
            "cpu_s": time.process_time() - cpu, "peak_rss_mb": usage.ru_maxrss / 1024}


def _child(args: list[str]) -> dict[str, Any]:
    return run_phase(__file__, args, REPO)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=400_000)
    parser.add_argument("--bootstrap", default=None, help="Kafka (default: the configured one)")
    parser.add_argument("--phase", help=argparse.SUPPRESS)
    parser.add_argument("--prefix", help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=100_000, help=argparse.SUPPRESS)
    add_argument(parser)
    args = parser.parse_args()
    bootstrap = args.bootstrap or load_settings().kafka.bootstrap
    if args.phase:
        print(json.dumps(phase(args.phase, bootstrap, args.prefix, args.data, args.batch)))
        return 0

    ready, why = probe_cluster(bootstrap)
    if not ready:
        print(f"Kafka at {bootstrap} is not ready ({why}); start it with `rwi-etl kafka up` "
              "or pass --bootstrap", file=sys.stderr)
        return 3
    prefix = f"bench_{uuid.uuid4().hex[:8]}"
    work = Path(tempfile.mkdtemp(prefix="rwi-bench-"))
    try:
        started = time.perf_counter()
        produce(bootstrap, prefix, args.events)
        print(f"produced {args.events:,} events to {prefix}.* on {bootstrap} in "
              f"{time.perf_counter() - started:.1f}s", file=sys.stderr)
        common = ["--bootstrap", bootstrap, "--prefix", prefix]
        results = [
            _child([*common, "--phase", "read", "--data", str(work / "r")]),
            _child([*common, "--phase", "decode", "--data", str(work / "d")]),
            {**_child([*common, "--phase", "compact", "--data", str(work / "c1"),
                       "--batch", "100000"]), "phase": "compact (batch 100k)"},
            {**_child([*common, "--phase", "compact", "--data", str(work / "c2"),
                       "--batch", "25000"]), "phase": "compact (batch 25k)"},
            {**_child([*common, "--phase", "warehouse", "--data", str(work / "c1")]),
             "phase": "warehouse load (DuckDB)"},
        ]
        write(args.summary, _report(results))
    finally:
        asyncio.run(delete_topics(bootstrap, all_topics(prefix)))
        shutil.rmtree(work, ignore_errors=True)
    return 0


def _report(results: list[dict[str, Any]]) -> list[Figure]:
    baseline = next(r for r in results if r["phase"] == "decode")
    base_wall = baseline["events"] / baseline["wall_s"]
    base_cpu = baseline["events"] / baseline["cpu_s"]
    print(f"{'phase':<26} {'events':>9} {'wall s':>7} {'ev/s':>9} {'ev/CPU-s':>9} "
          f"{'x decode':>8} {'x (CPU)':>8} {'peak RSS':>9}")
    for r in results:
        wall = r["events"] / r["wall_s"] if r["wall_s"] else 0.0
        cpu = r["events"] / r["cpu_s"] if r["cpu_s"] else 0.0
        print(f"{r['phase']:<26} {r['events']:>9,} {r['wall_s']:>7.2f} {wall:>9,.0f} "
              f"{cpu:>9,.0f} {wall / base_wall:>8.2f} {cpu / base_cpu:>8.2f} "
              f"{r['peak_rss_mb']:>7.0f}MB")
    compact = next(r for r in results if r["phase"].startswith("compact (batch 100k)"))
    rate = compact["events"] / compact["wall_s"]
    print(f"\nKafka → Parquet: {rate:,.0f} events/s per process "
          f"(goal ≥ 100,000), {rate / base_wall:.2f}× the decode-only baseline (goal ≥ 0.5)")
    return [Figure("Kafka → Parquet, per process",
                   f"{rate:,.0f} events/s, peak RSS {compact['peak_rss_mb']:.0f} MB",
                   f"decode-only {base_wall:,.0f}/s", rate / base_wall,
                   "≥ 100,000 ev/s, ≥ 0.5 × decode", rate >= 100_000 and rate >= 0.5 * base_wall)]


if __name__ == "__main__":
    sys.exit(main())

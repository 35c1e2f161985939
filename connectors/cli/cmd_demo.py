"""``rwi-etl demo``: the main job end to end on embedded defaults.

Local Kafka (or ``KAFKA_BOOTSTRAP_SERVERS``) → the simulated PBX posting webhooks the way
RustPBX does, in each dialect → ``rwi-etl ingest`` → the Dagster refresh job in process
(compaction, analytics, checks, publishing) → a summary, the HTML report and a check of
the analytics tables against the simulator's ground truth.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import duckdb

from pipelines.catalog import all_topics
from pipelines.errors import RwiEtlError
from pipelines.kafka_io import message_counts
from pipelines.kafka_local import LocalKafka
from pipelines.report.build import write_report
from pipelines.settings import Settings
from pipelines.warehouse import WarehousePaths

DIALECT_START = {"v1.0": "2026-11-02T08:00:00Z", "current": "2026-11-03T08:00:00Z"}


class DemoError(RwiEtlError):
    """A step of the demo failed; the message says which."""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "demo",
        help="run the main job end to end: simulated PBX → ingest → Kafka → Dagster → DuckDB",
        description=(
            "Start the local Kafka broker (or use KAFKA_BOOTSTRAP_SERVERS), start "
            "`rwi-etl ingest` on a loopback port, let the simulated PBX post its webhooks in "
            "each dialect, run the Dagster refresh job in process (compaction, analytics, "
            "checks, publishing), then print a summary, write the HTML report and compare the "
            "analytics tables with the simulator's ground truth. Everything the demo started "
            "is stopped at the end. Data goes to RWI_DATA_DIR (default ./data)."
        ),
    )
    parser.add_argument("--calls", type=int, default=300, help="calls per dialect (default 300)")
    parser.add_argument("--seed", type=int, default=7, help="simulator seed (default 7)")
    parser.add_argument(
        "--dialects",
        default="v1.0,current",
        help="comma-separated dialects to simulate (default v1.0,current)",
    )
    parser.add_argument(
        "--report",
        type=Path,
        default=None,
        help="HTML report path (default <RWI_DATA_DIR>/report.html)",
    )
    parser.add_argument("--keep-kafka", action="store_true", help="leave the broker running")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.set_defaults(handler=run)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "connectors.cli.main", *args]


def _step(title: str) -> None:
    print(f"\n== {title}", flush=True)


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise DemoError(f"the ingest service exited with code {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise DemoError(f"the ingest service did not become healthy at {url} in {timeout_s:.0f}s")


def _stop(proc: subprocess.Popen[bytes], timeout_s: float = 30.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run(args: argparse.Namespace, settings: Settings) -> int:
    dialects = [d.strip() for d in args.dialects.split(",") if d.strip()]
    unknown = [d for d in dialects if d not in DIALECT_START]
    if unknown or not dialects:
        raise DemoError(f"--dialects must name v1.0 and/or current, got {args.dialects!r}")
    data_dir = Path(settings.data_dir)
    demo_dir = data_dir / "demo"
    demo_dir.mkdir(parents=True, exist_ok=True)
    kafka = LocalKafka(settings)
    started_kafka = False
    _step("Kafka")
    if kafka.external:
        print(f"using the cluster at {settings.kafka.bootstrap} (KAFKA_BOOTSTRAP_SERVERS)")
    elif kafka.is_running():
        print(f"local Kafka already running at {settings.kafka.bootstrap}")
    else:
        print(f"starting local Kafka {settings.kafka.version} on {settings.kafka.bootstrap} …")
        status = kafka.up(on_download=lambda line: None)
        print(f"ready ({status.detail})")
        started_kafka = True
    try:
        return _run_pipeline(args, settings, dialects, demo_dir)
    finally:
        if started_kafka and not args.keep_kafka:
            print(kafka.down())


def _run_pipeline(
    args: argparse.Namespace, settings: Settings, dialects: list[str], demo_dir: Path
) -> int:
    env = {
        **os.environ,
        "RWI_DATA_DIR": str(settings.data_dir),
        "RWI_TOPIC_PREFIX": settings.topic_prefix,
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka.bootstrap,
    }
    sims: dict[str, dict[str, Any]] = {}
    for n, dialect in enumerate(dialects):
        # One PBX per dialect (an older and a newer build), each posting to its own ingest.
        pbx = f"pbx-{dialect.replace('.', '')}"
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        _step(f"{pbx}: ingest service on {url}/rwi-events")
        log_path = demo_dir / f"ingest-{pbx}.log"
        with log_path.open("wb") as log:
            ingest = subprocess.Popen(
                _cli("ingest", "--webhook", f"127.0.0.1:{port}"),
                env={**env, "RWI_PBX": pbx},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            _wait_healthy(f"{url}/healthz", ingest)
            print(f"healthy (pid {ingest.pid}, log {log_path})")
            _step(f"{pbx}: simulated PBX, dialect {dialect}, {args.calls} calls → webhook")
            truth = demo_dir / f"truth-{dialect}.jsonl"
            proc = subprocess.run(
                _cli(
                    "simulate",
                    "--dialect",
                    dialect,
                    "--calls",
                    str(args.calls),
                    "--seed",
                    str(args.seed + n),
                    "--start",
                    DIALECT_START[dialect],
                    "--webhook",
                    f"{url}/rwi-events",
                    "--truth",
                    str(truth),
                    "--json",
                ),
                env=env,
                stdout=subprocess.PIPE,
                check=False,
            )
            if proc.returncode != 0:
                raise DemoError(f"the simulator ({dialect}) exited with {proc.returncode}")
            sims[dialect] = {"truth": truth, "summary": json.loads(proc.stdout)}
            print(_simulated_line(sims[dialect]["summary"]))
        finally:
            _stop(ingest)
            print(f"ingest service stopped after draining (exit {ingest.returncode})")

    import asyncio

    counts = asyncio.run(
        message_counts(settings.kafka.bootstrap, all_topics(settings.topic_prefix))
    )
    _step("Dagster refresh job, in process (compaction → analytics → checks → publish)")
    from dagster_project.runner import run_refresh

    report = run_refresh(settings, log_level="WARNING")
    failed = [c for c in report.checks if not c.passed]
    print(
        f"run {report.run_id}: {'succeeded' if report.success else 'FAILED'}; "
        f"{len(report.checks) - len(failed)} checks passed, {len(failed)} failed"
    )
    for c in failed:
        print(f"  check failed: {c.asset} {c.check}: {c.description or ''}")
    if not report.published:
        raise DemoError("the refresh job did not publish the database; see the failures above")

    published = WarehousePaths.under(settings.data_dir).published
    from pipelines.analytics.verify import read_truth, verify

    con = duckdb.connect(str(published), read_only=True)
    try:
        mismatches = verify(
            con, itertools.chain.from_iterable(read_truth(s["truth"]) for s in sims.values())
        )
        summary = _summary(con)
    finally:
        con.close()
    report_path = args.report or Path(settings.data_dir) / "report.html"
    write_report(published, report_path)
    summary.update(
        {
            "kafka_messages": counts,
            "mismatches": len(mismatches),
            "report": str(report_path),
            "database": str(published),
        }
    )
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
    else:
        _print_summary(summary, mismatches)
    return 0 if report.success and not mismatches else 1


def _simulated_line(summary: dict[str, Any]) -> str:
    webhook = summary.get("webhook") or {}
    failed = sum(int(webhook.get(k, 0)) for k in ("non_2xx", "errors", "dropped"))
    return (
        f"{summary.get('calls_started')} call legs, {summary.get('events_total')} events, "
        f"{summary.get('bodies_written')} bodies posted in {summary.get('elapsed_s')}s: "
        f"{webhook.get('ok_2xx', 0)} answered 2xx, {failed} not"
    )


def _summary(con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
    def rows(query: str) -> list[tuple[Any, ...]]:
        return con.execute(query).fetchall()

    return {
        "events_per_category": dict(
            rows(
                "SELECT table_name, estimated_size FROM duckdb_tables() WHERE schema_name = 'raw' "
                "ORDER BY 1"
            )
        ),
        "distinct_events": {
            t: n
            for t, n in (
                (t, con.execute(f'SELECT count(*) FROM staging."{t}"').fetchone()[0])  # type: ignore[index]
                for (t,) in rows(
                    "SELECT view_name FROM duckdb_views() WHERE schema_name = 'staging'"
                )
            )
            if n
        },
        "calls_by_outcome": dict(
            rows("SELECT outcome, count(*) FROM analytics.calls GROUP BY 1 ORDER BY 2 DESC")
        ),
        "ivr": dict(
            zip(
                ("traversals", "abandoned", "transferred"),
                rows(
                    "SELECT count(*), count(*) FILTER (WHERE abandoned), "
                    "count(*) FILTER (WHERE final_result = 'transferred') FROM analytics.ivr_paths"
                )[0],
                strict=True,
            )
        ),
        "recordings_by_status": dict(
            rows("SELECT status, count(*) FROM analytics.recordings GROUP BY 1 ORDER BY 2 DESC")
        ),
        "dead_letters": rows("SELECT count(*) FROM raw.deadletter")[0][0],
    }


def _print_summary(summary: dict[str, Any], mismatches: list[Any]) -> None:
    _step("summary")
    print("events per category (distinct):")
    for table, n in summary["distinct_events"].items():
        print(f"  {table:12} {n:8,}")
    print(
        "calls by outcome: " + ", ".join(f"{k} {v}" for k, v in summary["calls_by_outcome"].items())
    )
    ivr = summary["ivr"]
    contained = ivr["traversals"] - ivr["abandoned"] - ivr["transferred"]
    print(
        f"IVR: {ivr['traversals']} traversals, {ivr['transferred']} routed on, "
        f"{ivr['abandoned']} abandoned, {contained} contained"
    )
    print(
        "recordings: " + ", ".join(f"{k} {v}" for k, v in summary["recordings_by_status"].items())
    )
    print(f"dead letters: {summary['dead_letters']}")
    verdict = "0 mismatches" if not mismatches else f"{len(mismatches)} MISMATCHES"
    print(f"ground truth check: {verdict}")
    for m in mismatches[:10]:
        print(f"  {m}")
    print(f"database: {summary['database']}")
    print(f"report:   {summary['report']}")

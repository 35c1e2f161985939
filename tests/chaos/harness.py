"""The fault suite's machinery: a simulated PBX, the real ingest service as a child process,
a sender that never gives up, compaction, the analytics tables, and the reconciliation.

Every case ends the same way (:func:`reconcile`): what reached Kafka is compacted into a
fresh lake and working database, the analytics tables are built, and

- *expected* is the set of event ids one uninterrupted ingest would have given the bodies
  (or WebSocket frames) the PBX sent, computed offline with the same converter;
- *stored* is the set of event ids in the raw tables;
- **lost** = expected − stored, **doubled** = events stored under an id no uninterrupted run
  gives (a second identity for one fact) + rows the dedup views still hold twice;
- the analytics tables are compared field by field with the simulator's ground truth.

RustPBX never retries a webhook; the sender here does (until a 2xx), so that after a fault
everything the PBX sent is expected in the tables — what is measured is whether the
pipeline loses or doubles, not whether a PBX without retries would.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import socket
import subprocess
import sys
import time
import zlib
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import duckdb
import orjson

from connectors.cli import cmd_simulate
from pipelines.analytics import build_analytics
from pipelines.analytics.verify import read_truth, verify_report
from pipelines.compact import CompactSettings, run_compact
from pipelines.ingest import BodyConverter
from pipelines.settings import Settings, load_settings
from pipelines.warehouse import WarehousePaths
from tests.integration.test_ingest_faults import wait_healthy

REPO = Path(__file__).resolve().parents[2]
TOKEN = "chaos-webhook-token"
WS_TOKEN = "chaos-ws-token"
PBX = "pbx-chaos"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- the PBX --------------------------------------------------------------------------------


@dataclass
class Traffic:
    """What a simulated PBX sent: webhook bodies in send order and its ground truth."""

    bodies: list[bytes]
    truth: list[dict[str, Any]]

    def __add__(self, other: Traffic) -> Traffic:
        return Traffic(self.bodies + other.bodies, self.truth + other.truth)

    def then_restarted(self, later: Traffic) -> Traffic:
        """This PBX's traffic followed by a later run of the same PBX. Each run's truth ends
        with its agents' last state open; once an agent's state changes in the later run,
        that state has ended (the same agent ids are in both runs)."""
        first_seen: dict[str, str] = {}
        for row in later.truth:
            if row.get("kind") == "agent_state":
                agent, began = row["agent_id"], row["started_at"]
                first_seen[agent] = min(began, first_seen.get(agent, began))
        truth = []
        for row in self.truth:
            if (row.get("kind") == "agent_state" and row.get("ended_at") is None
                    and row["agent_id"] in first_seen):
                ended = first_seen[row["agent_id"]]
                row = dict(row, ended_at=ended, duration_ms=_ms_between(row["started_at"], ended))
            truth.append(row)
        return Traffic(self.bodies + later.bodies, truth + later.truth)


def _ms_between(start: str, end: str) -> int:
    def parse(text: str) -> datetime:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))

    return round((parse(end) - parse(start)).total_seconds() * 1000)


def simulate(tmp: Path, dialect: str, calls: int, seed: int, extra: Sequence[str] = (),
             start: str | None = None) -> Traffic:
    """``rwi-etl simulate --out --truth`` (its own parser, the code the command runs)."""
    out, truth = tmp / f"sim-{dialect}-{seed}.jsonl", tmp / f"sim-{dialect}-{seed}.truth.jsonl"
    parser = argparse.ArgumentParser()
    cmd_simulate.register(parser.add_subparsers())
    argv = ["simulate", "--dialect", dialect, "--calls", str(calls), "--seed", str(seed),
            "--out", str(out), "--truth", str(truth), "--no-progress", *extra]
    if start:
        argv += ["--start", start]
    args = parser.parse_args(argv)
    code = args.handler(args, load_settings(environ={}))
    assert code == 0, f"simulate exited {code}"
    bodies = [line for line in out.read_bytes().splitlines() if line.strip()]
    return Traffic(bodies, list(read_truth(truth)))


def simulator_process(argv: Sequence[str], log: Path) -> subprocess.Popen[bytes]:
    """``rwi-etl simulate`` as a child process (for the WebSocket server)."""
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "connectors.cli.main", "simulate",
                                 "--no-progress", *argv],
                                cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                                env=dict(os.environ, RWI_WS_TOKEN=WS_TOKEN))


# -- the ingest service ---------------------------------------------------------------------


class Ingest:
    """``rwi-etl ingest`` as a child process that can be killed and started again."""

    def __init__(self, bootstrap: str, prefix: str, log: Path, *, webhook: bool = True,
                 ws_url: str | None = None, env: dict[str, str] | None = None,
                 config: Path | None = None) -> None:
        self.port = free_port() if webhook else None
        self.bootstrap = bootstrap
        self.prefix = prefix
        self.log = log
        self.ws_url = ws_url
        self.extra_env = env or {}
        self.config = config
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.kills = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/rwi-events"

    def start(self) -> None:
        env = dict(os.environ, KAFKA_BOOTSTRAP_SERVERS=self.bootstrap,
                   RWI_TOPIC_PREFIX=self.prefix, RWI_WEBHOOK_TOKEN=TOKEN,
                   RWI_WS_TOKEN=WS_TOKEN, RWI_PBX=PBX, **self.extra_env)
        argv = [sys.executable, "-m", "connectors.cli.main", "ingest"]
        if self.port is not None:
            argv += ["--webhook", f"127.0.0.1:{self.port}"]
        if self.ws_url is not None:
            argv += ["--ws", self.ws_url]
        if self.config is not None:
            argv += ["--config", str(self.config)]
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=out,
                                         stderr=subprocess.STDOUT)
        self.starts += 1

    async def healthy(self, timeout_s: float = 90.0) -> None:
        assert self.port is not None and self.proc is not None
        await wait_healthy(f"http://127.0.0.1:{self.port}/healthz", timeout_s, self.proc,
                           self.log)

    def kill9(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)
        self.kills += 1

    def stop(self) -> int:
        """SIGTERM (drain what was accepted), then wait; the exit code."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            return -9

    def log_tail(self, lines: int = 30) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def cleanup(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


# -- a sender that posts until every body got a 2xx -----------------------------------------


@dataclass
class SendStats:
    bodies: int = 0
    posts: int = 0
    acked: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    connection_errors: int = 0
    extra_copies: int = 0  # duplicate deliveries the case asked for

    @property
    def retries(self) -> int:
        return self.posts - self.acked


class ReliableSender:
    """Posts bodies like RustPBX (keep-alive, one request in flight per lane) but retries each
    body until it is answered 2xx. 400/401/413 are never retried: they would be a bug here."""

    def __init__(self, url: str, *, timeout_s: float = 10.0) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self.stats = SendStats()
        self.acked_event = asyncio.Event()

    async def post(self, http: aiohttp.ClientSession, body: bytes) -> None:
        while True:
            self.stats.posts += 1
            try:
                async with http.post(self.url, data=body) as response:
                    await response.read()
                    self.stats.statuses[response.status] += 1
                    if 200 <= response.status < 300:
                        self.stats.acked += 1
                        self.acked_event.set()
                        return
                    if response.status in (400, 401, 413):
                        raise AssertionError(f"a valid body was answered {response.status}")
                    retry_after = float(response.headers.get("Retry-After", "0.1") or 0.1)
                    await asyncio.sleep(min(retry_after, 0.25))
            except (TimeoutError, aiohttp.ClientError):
                self.stats.connection_errors += 1
                await asyncio.sleep(0.05)

    async def send(self, lanes: Sequence[Sequence[bytes]]) -> SendStats:
        """Each lane posts its bodies in order; lanes run concurrently."""
        self.stats.bodies += sum(len(lane) for lane in lanes)
        timeout = aiohttp.ClientTimeout(total=self.timeout_s)
        headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
        connector = aiohttp.TCPConnector(limit=max(len(lanes), 1))
        async with aiohttp.ClientSession(headers=headers, timeout=timeout,
                                         connector=connector) as http:

            async def lane(bodies: Sequence[bytes]) -> None:
                for body in bodies:
                    await self.post(http, body)

            await asyncio.gather(*(lane(b) for b in lanes))
        return self.stats


async def finish(sending: asyncio.Task[SendStats], sender: ReliableSender, ingest: Ingest,
                 timeout_s: float = 300.0) -> SendStats:
    """The sender's result, or a failure that says where it stood and what the service
    logged last, instead of a silent hang."""
    try:
        return await asyncio.wait_for(asyncio.shield(sending), timeout_s)
    except TimeoutError:
        sending.cancel()
        raise AssertionError(
            f"the sender did not finish in {timeout_s:.0f}s: {sender.stats}\n"
            f"last lines of {ingest.log}:\n{ingest.log_tail()}") from None


async def kill_at(ingest: Ingest, sender: ReliableSender, marks: Iterable[int],
                  rng: random.Random) -> None:
    """SIGKILL the service each time the sender's acknowledged count passes a mark (while
    requests are in flight), then start it again on the same port."""
    for mark in sorted(marks):
        while sender.stats.acked < mark:
            sender.acked_event.clear()
            await sender.acked_event.wait()
        await asyncio.sleep(rng.uniform(0.0, 0.02))
        ingest.kill9()
        await asyncio.sleep(rng.uniform(0.0, 0.3))
        ingest.start()
        await ingest.healthy()


# -- landing and reconciling ----------------------------------------------------------------


def lake_settings(bootstrap: str, prefix: str, data_dir: Path) -> Settings:
    return load_settings(environ={"KAFKA_BOOTSTRAP_SERVERS": bootstrap,
                                  "RWI_TOPIC_PREFIX": prefix, "RWI_DATA_DIR": str(data_dir)})


def expected_ids(frames: Iterable[bytes], source: str = "webhook",
                 skip_types: tuple[str, ...] = ()) -> set[str]:
    """The event ids one uninterrupted ingest gives these bodies or frames (less events of
    ``skip_types``)."""
    converter = BodyConverter(PBX)
    now = datetime.now(UTC)
    ids: set[str] = set()
    for raw in frames:
        converted = converter.convert(raw, source=source, received_at=now)
        assert not converted.dead_letters, f"a valid input was dead-lettered: {raw[:200]!r}"
        ids.update(e.event_id for e in converted.events if e.event_type not in skip_types)
    return ids


@dataclass
class Reconciliation:
    case: str
    faults: str
    sent: int  # bodies or frames the PBX sent
    events_expected: int
    events_stored: int
    kafka_messages: int
    lost: int
    doubled: int
    truth_rows: int
    truth_mismatches: int
    dead_letters: int
    detail: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def as_row(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items()}

    def check(self) -> None:
        assert self.lost == 0 and self.doubled == 0, self.as_row()
        assert self.truth_mismatches == 0, self.as_row()
        assert self.dead_letters == 0, self.as_row()


def land(settings: Settings, options: CompactSettings | None = None) -> Path:
    """Compact every topic into the lake and the working database; its path."""
    run_compact(settings, options or CompactSettings(publish=False))
    return WarehousePaths.under(settings.data_dir).work


def stored_ids(db: Path, where: str = "true") -> set[str]:
    """Distinct event ids in the raw tables of ``db`` whose rows match ``where``."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        tables = [t for (t,) in con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE schema_name = 'raw' "
            "AND table_name <> 'deadletter'").fetchall()]
        return {i for t in tables for (i,) in con.execute(
            f'SELECT DISTINCT event_id FROM raw."{t}" WHERE {where}').fetchall()}
    finally:
        con.close()


def reconcile(case: str, faults: str, db: Path, sent: int, expected: set[str],
              truth: list[dict[str, Any]] | None, started: float,
              detail: dict[str, Any] | None = None,
              session_events: tuple[str, ...] = ()) -> Reconciliation:
    """Compare what landed in ``db`` with what the PBX sent (see the module docstring).
    ``session_events`` are types a session's own connection produces (``session_resumed``):
    not compared."""
    con = duckdb.connect(str(db))
    try:
        tables = [t for (t,) in con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE schema_name = 'raw' "
            "AND table_name <> 'deadletter'").fetchall()]
        stored: set[str] = set()
        messages = 0
        doubled_rows = 0
        skip = ", ".join(f"'{t}'" for t in session_events) or "''"
        for table in tables:
            stored.update(i for (i,) in con.execute(
                f'SELECT DISTINCT event_id FROM raw."{table}" '
                f"WHERE event_type NOT IN ({skip})").fetchall())
            (n,) = con.execute(f'SELECT count(*) FROM raw."{table}"').fetchone()  # type: ignore[misc]
            messages += n
            (dup,) = con.execute(  # type: ignore[misc]
                f'SELECT count(*) - count(DISTINCT event_id) FROM staging."{table}"').fetchone()
            doubled_rows += dup
        (dead,) = con.execute("SELECT count(*) FROM raw.deadletter").fetchone()  # type: ignore[misc]
        mismatches: list[Any] = []
        truth_rows = 0
        if truth is not None:
            build_analytics(con)
            report = verify_report(con, truth)
            mismatches = report.mismatches
            truth_rows = sum(report.rows.values())
    finally:
        con.close()
    lost = expected - stored
    extra = stored - expected
    result = Reconciliation(
        case=case, faults=faults, sent=sent, events_expected=len(expected),
        events_stored=len(stored), kafka_messages=messages, lost=len(lost),
        doubled=len(extra) + doubled_rows, truth_rows=truth_rows,
        truth_mismatches=len(mismatches), dead_letters=dead,
        detail={**(detail or {}), "redelivered_copies_removed": messages - len(stored),
                "first_mismatches": [str(m) for m in mismatches[:5]],
                "first_lost": sorted(lost)[:5], "first_extra": sorted(extra)[:5]},
        seconds=round(time.monotonic() - started, 1))
    RESULTS.append(result)
    return result


RESULTS: list[Reconciliation] = []


def split_by_call(bodies: Sequence[bytes], lanes: int) -> list[list[bytes]]:
    """Lanes that keep each call's bodies in order (as one PBX worker per call would)."""
    out: list[list[bytes]] = [[] for _ in range(lanes)]
    for body in bodies:
        doc = orjson.loads(body)
        key = str(doc.get("call_id") or (doc.get("event") or {}).get("call_id") or "")
        out[zlib.crc32(key.encode()) % lanes].append(body)
    return out


# -- the network between the ingest service and the PBX's WebSocket -------------------------


class DroppingProxy:
    """A TCP proxy on loopback whose :meth:`cut` drops every open connection at once, as a
    network failure or a load balancer's idle timeout would."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.cuts = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def __aenter__(self) -> DroppingProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        self.cut()
        await self._server.wait_closed()

    @property
    def connections(self) -> int:
        return len(self._writers) // 2

    def cut(self) -> None:
        if self._writers:
            self.cuts += 1
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.transport.abort()
                self._writers.discard(dst)

        await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))


async def listen_all(port: int, contexts: Sequence[str], frames: list[bytes],
                     connected: asyncio.Event | None = None) -> None:
    """A reference listener connected straight to the PBX (no faults): subscribes, asks for
    the cache, and keeps every event frame until the PBX closes the connection. Frames that
    arrive before the resume reply are in the 1.0 replay that follows it, so the replay
    stands for them (as in the ingest service)."""
    import websockets

    url = f"ws://127.0.0.1:{port}/rwi/v1?token={WS_TOKEN}"
    async with websockets.connect(url, subprotocols=[websockets.Subprotocol("rwi-v1")],
                                  max_size=None) as ws:
        await ws.send(orjson.dumps({"action_id": "ref-subscribe", "action": "session.subscribe",
                                    "params": {"contexts": list(contexts)}}).decode())
        await ws.send(orjson.dumps({"action_id": "ref-resume", "action": "session.resume",
                                    "params": {"last_sequence": 0}}).decode())
        if connected is not None:
            connected.set()
        held: list[bytes] | None = []
        try:
            async for message in ws:
                raw = message.encode() if isinstance(message, str) else message
                if b'"command_' in raw[:200] and b'"type"' in raw[:200]:
                    reply = orjson.loads(raw)
                    if reply.get("action_id") == "ref-resume":
                        if not (reply.get("data") or {}).get("replayed_count"):
                            frames.extend(held or [])
                        held = None
                    continue  # a reply to the reference's own commands
                if held is not None:
                    held.append(raw)
                else:
                    frames.append(raw)
        except websockets.ConnectionClosed:
            pass

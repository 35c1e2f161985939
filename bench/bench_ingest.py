"""Ingest throughput against baselines measured in the same run (DESIGN §7).

    python bench/bench_ingest.py [--seconds 5] [--ws-events 20000] [--lanes 64]
                                 [--cases webhook1,webhook64,ws] [--client raw|aiohttp]

1. Webhook, one request in flight (how RustPBX posts): ``rwi-etl ingest`` answering only
   after Kafka acks (acks=all) vs a bare aiohttp server answering 200. Goal ≥ 1,000 ev/s.
2. Webhook, ``--lanes`` concurrent senders, same pair. Goal ≥ 0.5 × bare.
3. WebSocket: the ingest listener (convert + Avro + idempotent acks=all produce, until the
   last ack) vs a bare receive loop on the same frames. Goal ≥ 30,000 ev/s and ≥ 0.5 × bare.

The webhook load generator is, by default, a minimal HTTP/1.1 keep-alive client (one
connection per lane, Content-Length bodies, the whole response read) standing in for
RustPBX's Rust client, so the measurement is of the servers rather than of a Python HTTP
client sharing their CPUs; ``--client aiohttp`` uses aiohttp's client instead. Both servers
of a case face the same client. After the webhook cases the messages in Kafka are counted:
there must be at least one per 200 answered.

Servers run in child processes, the load generator here. Kafka: KAFKA_BOOTSTRAP_SERVERS,
or a local broker (warmed up for 10 s first, stopped afterwards) on RWI_KAFKA_PORT and
RWI_KAFKA_CONTROLLER_PORT under RWI_DATA_DIR when those are set, else on free ports under
.cache/bench-kafka. Every webhook measurement follows an untimed warm-up.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.summary import Figure, add_argument, write  # noqa: E402
from connectors.ingest.metrics import Metrics  # noqa: E402
from connectors.ingest.runtime import tune_garbage_collector  # noqa: E402
from connectors.ingest.service import IngestService  # noqa: E402
from connectors.ingest.wsclient import WsConfig, WsListener  # noqa: E402
from pipelines.catalog import all_topics  # noqa: E402
from pipelines.kafka_io import message_counts  # noqa: E402
from pipelines.kafka_local import LocalKafka  # noqa: E402
from pipelines.settings import load_settings  # noqa: E402
from pipelines.topics import delete_topics  # noqa: E402

TEMPLATE = json.loads(
    (REPO / "tests/fixtures/ingest/webhook_current.jsonl").read_text().splitlines()[1])
CASES = ("webhook1", "webhook64", "ws")


def webhook_body(i: int) -> bytes:
    call_id = f"bench-{i}@10.0.0.5"
    doc = dict(TEMPLATE, call_id=call_id, timestamp=f"2026-08-22T15:33:10.{i:09d}+00:00")
    doc["event"] = dict(TEMPLATE["event"], call_id=call_id)
    return json.dumps(doc).encode()


def ws_frame(i: int) -> str:
    return json.dumps(dict(TEMPLATE["event"], call_id=f"ws-{i}@10.0.0.5"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def run_loop(main: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    with asyncio.Runner(loop_factory=_new_loop) as runner:
        return runner.run(main())


# -- baselines (child processes) -------------------------------------------------------


def serve_bare_http(port: int) -> None:
    from aiohttp import web

    async def ok(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=b'{"status":"ok","events":1}', content_type="application/json")

    async def main() -> None:
        app = web.Application(client_max_size=1024 * 1024)
        app.router.add_post("/rwi-events", ok)
        app.router.add_get("/healthz", lambda r: ok(r))
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port, backlog=1024).start()
        await asyncio.Event().wait()

    run_loop(main)


def serve_ws_frames(port: int, count: int) -> None:
    """A PBX double that answers subscribe/resume and then pushes ``count`` frames."""
    from websockets.asyncio.server import ServerConnection, serve

    frames = [ws_frame(i) for i in range(count)]

    async def handle(ws: ServerConnection) -> None:
        async for text in ws:
            command = json.loads(text)
            reply: dict[str, Any] = {"type": "command_completed", "status": "success",
                                     "action_id": command["action_id"],
                                     "action": command["action"]}
            if command["action"] == "session.resume":
                reply["data"] = {"replayed_count": 0, "events": []}
            await ws.send(json.dumps(reply))
            if command["action"] == "session.subscribe":
                for frame in frames:
                    await ws.send(frame)

    async def main() -> None:
        async with serve(handle, "127.0.0.1", port, subprotocols=["rwi-v1"],  # type: ignore[list-item]
                         max_size=None, compression=None):
            await asyncio.Event().wait()

    run_loop(main)


@contextlib.contextmanager
def child(target: Callable[..., None], *args: Any) -> Iterator[None]:
    proc = multiprocessing.get_context("spawn").Process(target=target, args=args, daemon=True)
    proc.start()
    try:
        yield
    finally:
        proc.terminate()
        proc.join(10)


@contextlib.contextmanager
def ingest_process(port: int, bootstrap: str, prefix: str) -> Iterator[None]:
    env = dict(os.environ, KAFKA_BOOTSTRAP_SERVERS=bootstrap, RWI_TOPIC_PREFIX=prefix,
               RWI_PBX="bench")
    env.pop("RWI_WEBHOOK_TOKEN", None)
    proc = subprocess.Popen([sys.executable, "-m", "connectors.cli.main", "ingest",
                             "--webhook", f"127.0.0.1:{port}"], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield
    finally:
        proc.terminate()
        proc.wait(30)


def wait_port(port: int, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")


# -- load ------------------------------------------------------------------------------


async def wait_ready(url: str, timeout_s: float = 60.0) -> None:
    async with aiohttp.ClientSession() as http, asyncio.timeout(timeout_s):
        while True:
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(url) as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.1)


class RawHttpClient:
    """One keep-alive HTTP/1.1 connection posting JSON bodies, as a lean sender would."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.head = (f"POST {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
                     "Content-Type: application/json\r\nContent-Length: ").encode()
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, body: bytes) -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        self.writer.write(b"%s%d\r\n\r\n%s" % (self.head, len(body), body))
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if length:
            await self.reader.readexactly(length)
        return status

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError):
                await self.writer.wait_closed()


async def post_load(url: str, seconds: float, lanes: int, bodies: list[bytes],
                    client: str = "raw") -> tuple[float, int]:
    """(events/s answered 200, requests answered 200 including warm-up) at ``lanes`` in flight."""
    done = 0
    failed = 0
    next_body = 0
    ok_total = 0
    async with contextlib.AsyncExitStack() as stack:
        posters: list[Callable[[bytes], Awaitable[int]]] = []
        if client == "raw":
            for _ in range(lanes):
                raw = RawHttpClient(url)
                stack.push_async_callback(raw.close)
                posters.append(raw.post)
        else:
            http = await stack.enter_async_context(
                aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=lanes)))

            async def post(body: bytes) -> int:
                async with http.post(url, data=body) as response:
                    await response.read()
                    return response.status

            posters = [post] * lanes
        # Warm-up, untimed: connections, topic metadata, caches, the broker's JIT.
        warm_until = time.perf_counter() + min(2.0, seconds / 2)
        i = 0
        while i < lanes or time.perf_counter() < warm_until:
            ok_total += await posters[i % lanes](bodies[i % len(bodies)]) == 200
            i += 1
        deadline = time.perf_counter() + seconds

        async def lane(post: Callable[[bytes], Awaitable[int]]) -> None:
            nonlocal done, failed, next_body
            while time.perf_counter() < deadline:
                body = bodies[next_body % len(bodies)]
                next_body += 1
                if await post(body) == 200:
                    done += 1
                else:
                    failed += 1

        started = time.perf_counter()
        await asyncio.gather(*(lane(post) for post in posters))
        elapsed = time.perf_counter() - started
    if failed:
        print(f"  ({failed} requests were not answered 200)", file=sys.stderr)
    return done / elapsed, ok_total + done


async def ws_bare(url: str, count: int) -> float:
    from websockets.asyncio.client import connect

    async with connect(url, subprotocols=["rwi-v1"], max_size=None,  # type: ignore[list-item]
                       compression=None) as ws:
        await ws.send(json.dumps({"action_id": "b1", "action": "session.subscribe",
                                  "params": {"contexts": []}}))
        await ws.recv(decode=False)  # the subscribe reply
        started = time.perf_counter()
        received = 0
        while received < count:
            raw = await ws.recv(decode=False)
            json.loads(raw)  # a receive loop that at least looks at what it got
            received += 1
        return count / (time.perf_counter() - started)


async def ws_ingest(url: str, count: int, bootstrap: str, prefix: str) -> float:
    settings = load_settings(environ={"KAFKA_BOOTSTRAP_SERVERS": bootstrap,
                                      "RWI_TOPIC_PREFIX": prefix, "RWI_PBX": "bench"})
    # The service wires one converter and one Kafka publisher; drive its WebSocket half.
    from connectors.ingest.service import Channels

    svc = IngestService(settings, Channels(None, "ws://unused"))
    tune_garbage_collector()  # as the service's own process does (run_until_signalled)
    await svc.publisher.start()  # type: ignore[attr-defined]
    assert await svc.publisher.wait_connected(60)  # type: ignore[attr-defined]
    metrics = Metrics()
    config = WsConfig(url=url, resume=True, max_frame_bytes=16 * 1024 * 1024)
    listener = WsListener(config, svc.converter, svc.publisher, metrics,
                          lambda: datetime.now(UTC))
    task = asyncio.create_task(listener.run())
    try:
        while metrics.total("bodies_received_total") < 1:
            await asyncio.sleep(0.001)
        started = time.perf_counter()
        while metrics.total("events_published_total") < count:
            await asyncio.sleep(0.002)
        return count / (time.perf_counter() - started)
    finally:
        await listener.stop()
        await task
        await svc.publisher.close(30)


# -- broker ----------------------------------------------------------------------------


@contextlib.contextmanager
def kafka() -> Iterator[str]:
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        yield os.environ["KAFKA_BOOTSTRAP_SERVERS"]
        return
    # RWI_KAFKA_PORT, RWI_KAFKA_CONTROLLER_PORT and RWI_DATA_DIR choose where the bench's own
    # broker lives, so runs beside other brokers on a shared machine do not collide.
    env = {"RWI_DATA_DIR": os.environ.get("RWI_DATA_DIR") or str(REPO / ".cache" / "bench-kafka"),
           "RWI_KAFKA_PORT": os.environ.get("RWI_KAFKA_PORT") or str(free_port()),
           "RWI_KAFKA_CONTROLLER_PORT": (os.environ.get("RWI_KAFKA_CONTROLLER_PORT")
                                         or str(free_port()))}
    for name in ("RWI_CACHE_DIR", "RWI_KAFKA_VERSION"):
        if os.environ.get(name):
            env[name] = os.environ[name]
    broker = LocalKafka(load_settings(environ=env))
    status = broker.up(timeout_s=120)
    print(f"started a local Kafka broker at {status.bootstrap}", file=sys.stderr)
    try:
        run_loop(lambda: warm_broker(status.bootstrap))
        yield status.bootstrap
    finally:
        print(broker.down(), file=sys.stderr)


async def warm_broker(bootstrap: str, seconds: float = 10.0) -> None:
    """A fresh broker's JVM answers slowly until its JIT has compiled the produce path:
    send it the measured kinds of traffic (bulk and one at a time) first, untimed."""
    from aiokafka import AIOKafkaProducer

    from connectors.ingest.kafka_publisher import resolve_compression
    from pipelines.topics import ensure_topics

    topic = f"rwi_bench_warmup_{uuid.uuid4().hex[:8]}"
    await ensure_topics(bootstrap, [topic], 3, 1, 3_600_000)
    # As the ingest publisher sends: bulk batches compressed, lone records plain.
    bulk, single = (AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True,
                                     acks="all", compression_type=compression, linger_ms=0)
                    for compression in (resolve_compression("auto"), None))
    await bulk.start()
    await single.start()
    try:
        value = webhook_body(0)
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            futures = [await bulk.send(topic, value, key=b"%d" % i) for i in range(2000)]
            await asyncio.gather(*futures)
            for i in range(200):
                await single.send_and_wait(topic, value, key=b"%d" % i)
    finally:
        await bulk.stop()
        await single.stop()
        await delete_topics(bootstrap, [topic])


# -- report ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    case: str
    ingest: float
    bare: float
    goal: str
    met: bool


def webhook_rows(bootstrap: str, prefix: str, args: argparse.Namespace,
                 bodies: list[bytes]) -> list[Row]:
    rows: list[Row] = []
    answered = 0
    bare_port, ingest_port = free_port(), free_port()
    with child(serve_bare_http, bare_port), ingest_process(ingest_port, bootstrap, prefix):
        bare = f"http://127.0.0.1:{bare_port}"
        ingest = f"http://127.0.0.1:{ingest_port}"
        run_loop(lambda: wait_ready(f"{bare}/healthz"))
        run_loop(lambda: wait_ready(f"{ingest}/healthz"))
        for case, lanes in (("webhook1", 1), ("webhook64", args.lanes)):
            if case not in args.cases:
                continue

            async def measure(lanes: int = lanes) -> tuple[float, float, int]:
                bare_rate, _ = await post_load(f"{bare}/rwi-events", args.seconds, lanes,
                                               bodies, args.client)
                rate, ok = await post_load(f"{ingest}/rwi-events", args.seconds, lanes,
                                           bodies, args.client)
                return rate, bare_rate, ok

            rate, bare_rate, ok = run_loop(measure)
            answered += ok
            if lanes == 1:
                rows.append(Row("webhook, 1 in flight", rate, bare_rate, "≥ 1,000 ev/s",
                                rate >= 1000))
            else:
                rows.append(Row(f"webhook, {lanes} in flight", rate, bare_rate,
                                "≥ 0.5 × bare", rate >= 0.5 * bare_rate))
    stored = sum(run_loop(lambda: message_counts(bootstrap, all_topics(prefix))).values())
    print(f"webhook: {answered:,} requests answered 200, {stored:,} messages in Kafka",
          file=sys.stderr)
    if stored < answered:
        raise SystemExit(f"FAIL: {answered} bodies were answered 200 but only {stored} "
                         "messages are in Kafka")
    return rows


def ws_row(bootstrap: str, prefix: str, args: argparse.Namespace) -> Row:
    ws_port = free_port()
    with child(serve_ws_frames, ws_port, args.ws_events):
        url = f"ws://127.0.0.1:{ws_port}/rwi/v1"
        wait_port(ws_port)

        async def measure() -> tuple[float, float]:
            bare_rate = await ws_bare(url, args.ws_events)
            return await ws_ingest(url, args.ws_events, bootstrap, prefix), bare_rate

        rate, bare_rate = run_loop(measure)
    return Row("websocket", rate, bare_rate, "≥ 30,000 ev/s, ≥ 0.5 × bare",
               rate >= 30_000 and rate >= 0.5 * bare_rate)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="per webhook measurement")
    parser.add_argument("--lanes", type=int, default=64, help="concurrent webhook senders")
    parser.add_argument("--ws-events", type=int, default=20_000)
    parser.add_argument("--cases", default=",".join(CASES),
                        help=f"comma-separated subset of {', '.join(CASES)}")
    parser.add_argument("--client", choices=("raw", "aiohttp"), default="raw",
                        help="webhook load generator (default: a minimal HTTP/1.1 client)")
    add_argument(parser)
    args = parser.parse_args()
    args.cases = {c.strip() for c in args.cases.split(",") if c.strip()}
    if not args.cases or not args.cases <= set(CASES):
        parser.error(f"--cases takes a subset of {', '.join(CASES)}")
    bodies = [webhook_body(i) for i in range(20_000)]
    rows: list[Row] = []
    with kafka() as bootstrap:
        prefix = f"rwi_bench_{uuid.uuid4().hex[:8]}"
        try:
            if args.cases & {"webhook1", "webhook64"}:
                rows += webhook_rows(bootstrap, prefix, args, bodies)
            if "ws" in args.cases:
                rows.append(ws_row(bootstrap, prefix, args))
        finally:
            with contextlib.suppress(Exception):
                run_loop(lambda: delete_topics(bootstrap, all_topics(prefix)))
    print(f"\nrwi-etl ingest benchmark ({os.cpu_count()} CPUs, Kafka at {bootstrap}, "
          f"webhook client: {args.client})")
    print(f"| {'case':<24} | {'ingest ev/s':>11} | {'baseline ev/s':>13} | {'ratio':>5} | "
          f"{'goal':<27} | met?")
    print(f"|{'-' * 26}|{'-' * 13}|{'-' * 15}|{'-' * 7}|{'-' * 29}|-----")
    for row in rows:
        print(f"| {row.case:<24} | {row.ingest:>11,.0f} | {row.bare:>13,.0f} | "
              f"{row.ingest / row.bare:>5.2f} | {row.goal:<27} | {'yes' if row.met else 'no'}")
    write(args.summary, [Figure(row.case, f"{row.ingest:,.0f} events/s",
                                f"bare {row.bare:,.0f}/s", row.ingest / row.bare, row.goal,
                                row.met) for row in rows])
    return 0


if __name__ == "__main__":
    sys.exit(main())

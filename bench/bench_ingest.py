"""Ingest throughput against baselines measured in the same run (DESIGN §7).

    python bench/bench_ingest.py [--seconds 5] [--ws-events 20000] [--lanes 64]

1. Webhook, one request in flight (how RustPBX posts): ``rwi-etl ingest`` answering only
   after Kafka acks (acks=all) vs a bare aiohttp server answering 200. Goal ≥ 1,000 ev/s.
2. Webhook, ``--lanes`` concurrent senders, same pair. Goal ≥ 0.5 × bare.
3. WebSocket: the ingest listener (convert + Avro + idempotent acks=all produce, until the
   last ack) vs a bare receive loop on the same frames. Goal ≥ 30,000 ev/s and ≥ 0.5 × bare.

Servers run in child processes, the load generator here. Kafka: KAFKA_BOOTSTRAP_SERVERS,
or a local broker started (and stopped) under .cache/bench-kafka.
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
from collections.abc import Callable, Coroutine, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from connectors.ingest.metrics import Metrics  # noqa: E402
from connectors.ingest.service import IngestService  # noqa: E402
from connectors.ingest.wsclient import WsConfig, WsListener  # noqa: E402
from pipelines.catalog import all_topics  # noqa: E402
from pipelines.kafka_local import LocalKafka  # noqa: E402
from pipelines.settings import load_settings  # noqa: E402
from pipelines.topics import delete_topics  # noqa: E402

TEMPLATE = json.loads(
    (REPO / "tests/fixtures/ingest/webhook_current.jsonl").read_text().splitlines()[1])


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


def run_loop(main: Callable[[], Coroutine[Any, Any, Any]]) -> None:
    with asyncio.Runner(loop_factory=_new_loop) as runner:
        runner.run(main())


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


async def post_load(url: str, seconds: float, lanes: int, bodies: list[bytes]) -> float:
    """Events/s answered 2xx by ``url`` with ``lanes`` requests in flight."""
    connector = aiohttp.TCPConnector(limit=lanes)
    done = 0
    failed = 0
    next_body = 0
    async with aiohttp.ClientSession(connector=connector) as http:
        for body in bodies[:50]:  # warm-up: connections, topic metadata, JIT-less caches
            async with http.post(url, data=body) as response:
                await response.read()
        deadline = time.perf_counter() + seconds

        async def lane() -> None:
            nonlocal done, failed, next_body
            while time.perf_counter() < deadline:
                body = bodies[next_body % len(bodies)]
                next_body += 1
                async with http.post(url, data=body) as response:
                    await response.read()
                    if response.status == 200:
                        done += 1
                    else:
                        failed += 1

        started = time.perf_counter()
        await asyncio.gather(*(lane() for _ in range(lanes)))
        elapsed = time.perf_counter() - started
    if failed:
        print(f"  ({failed} requests were not answered 200)", file=sys.stderr)
    return done / elapsed


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
    env = {"RWI_DATA_DIR": str(REPO / ".cache" / "bench-kafka"),
           "RWI_KAFKA_PORT": str(free_port()), "RWI_KAFKA_CONTROLLER_PORT": str(free_port())}
    if os.environ.get("RWI_CACHE_DIR"):
        env["RWI_CACHE_DIR"] = os.environ["RWI_CACHE_DIR"]
    broker = LocalKafka(load_settings(environ=env))
    status = broker.up(timeout_s=120)
    try:
        yield status.bootstrap
    finally:
        broker.down()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="per webhook measurement")
    parser.add_argument("--lanes", type=int, default=64, help="concurrent webhook senders")
    parser.add_argument("--ws-events", type=int, default=20_000)
    args = parser.parse_args()
    bodies = [webhook_body(i) for i in range(20_000)]
    rows: list[tuple[str, float, float, str]] = []
    with kafka() as bootstrap:
        prefix = f"rwi_bench_{uuid.uuid4().hex[:8]}"
        try:
            bare_port, ingest_port, ws_port = free_port(), free_port(), free_port()
            with child(serve_bare_http, bare_port), \
                    ingest_process(ingest_port, bootstrap, prefix):
                bare = f"http://127.0.0.1:{bare_port}"
                ingest = f"http://127.0.0.1:{ingest_port}"
                run_loop(lambda: wait_ready(f"{bare}/healthz"))
                run_loop(lambda: wait_ready(f"{ingest}/healthz"))
                for lanes, label, goal in ((1, "webhook, 1 in flight", "≥ 1,000 ev/s"),
                                           (args.lanes, f"webhook, {args.lanes} in flight",
                                            "≥ 0.5 × bare")):
                    result: dict[str, float] = {}

                    async def measure(lanes: int = lanes, out: dict[str, float] = result) -> None:
                        out["bare"] = await post_load(f"{bare}/rwi-events", args.seconds,
                                                      lanes, bodies)
                        out["ingest"] = await post_load(f"{ingest}/rwi-events", args.seconds,
                                                        lanes, bodies)

                    run_loop(measure)
                    rows.append((label, result["ingest"], result["bare"], goal))
            with child(serve_ws_frames, ws_port, args.ws_events):
                url = f"ws://127.0.0.1:{ws_port}/rwi/v1"
                wait_port(ws_port)
                ws: dict[str, float] = {}

                async def measure_ws() -> None:
                    ws["bare"] = await ws_bare(url, args.ws_events)
                    ws["ingest"] = await ws_ingest(url, args.ws_events, bootstrap, prefix)

                run_loop(measure_ws)
                rows.append(("websocket", ws["ingest"], ws["bare"], "≥ 30,000 ev/s, ≥ 0.5 × bare"))
        finally:
            with contextlib.suppress(Exception):
                run_loop(lambda: delete_topics(bootstrap, all_topics(prefix)))
    print(f"\nrwi-etl ingest benchmark ({os.cpu_count()} CPUs, Kafka at {bootstrap})")
    print(f"| {'case':<24} | {'ingest ev/s':>11} | {'bare ev/s':>10} | {'ratio':>5} | goal")
    print(f"|{'-' * 26}|{'-' * 13}|{'-' * 12}|{'-' * 7}|-----")
    for label, ingest_rate, bare_rate, goal in rows:
        print(f"| {label:<24} | {ingest_rate:>11,.0f} | {bare_rate:>10,.0f} | "
              f"{ingest_rate / bare_rate:>5.2f} | {goal}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Faults: kill -9 of the service mid-run, a broker stopped and restarted mid-run.

Invariant checked in both: every body answered 2xx is in Kafka afterwards.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from connectors.ingest.service import Channels, IngestService
from connectors.ingest.wsclient import LISTENER_ACTIONS
from pipelines import avro
from pipelines.catalog import topic_for
from pipelines.encode import EventEncoder
from pipelines.kafka_local import LocalKafka
from pipelines.settings import load_settings
from tests.fixtures.ingest.fake_pbx import TOKEN as TOKEN_WS
from tests.fixtures.ingest.fake_pbx import FakePbx, running_pbx
from tests.integration.test_ingest_webhook_kafka import TOKEN, read_topics, settings_for

pytestmark = [pytest.mark.kafka, pytest.mark.chaos]

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = json.loads(
    (REPO / "tests" / "fixtures" / "ingest" / "webhook_current.jsonl").read_text().splitlines()[1]
)


def body_for(call_id: str) -> bytes:
    doc = dict(TEMPLATE, call_id=call_id)
    doc["event"] = dict(TEMPLATE["event"], call_id=call_id)
    return json.dumps(doc).encode()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def stored_call_ids(bootstrap: str, prefix: str) -> set[str]:
    store = EventEncoder(prefix).store()
    records = await read_topics(bootstrap, [topic_for("call", prefix)])
    return {avro.decode(r.value, store).record["meta"]["call_id"] for r in records}


async def wait_healthy(url: str, timeout_s: float = 60.0,
                       proc: subprocess.Popen[bytes] | None = None,
                       log: Path | None = None) -> None:
    """Until ``url`` answers 200; fails at once when ``proc`` (the service) has exited."""
    async with aiohttp.ClientSession() as http, asyncio.timeout(timeout_s):
        while True:
            assert proc is None or proc.poll() is None, (
                f"ingest exited with {proc.returncode if proc else None}; see {log}")
            try:
                async with http.get(url) as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)


class Sender:
    """Posts numbered bodies like RustPBX (serially) from several lanes; records each answer."""

    def __init__(self, url: str, tag: str) -> None:
        self.url = url
        self.tag = tag
        self.acked: set[str] = set()
        self.statuses: list[int] = []
        self.next = 0
        self.stop = False

    async def lane(self, http: aiohttp.ClientSession) -> None:
        while not self.stop:
            call_id = f"{self.tag}-{self.next}"
            self.next += 1
            try:
                async with http.post(self.url, data=body_for(call_id)) as response:
                    self.statuses.append(response.status)
                    if 200 <= response.status < 300:
                        self.acked.add(call_id)
            except (TimeoutError, aiohttp.ClientError):
                self.statuses.append(0)
                await asyncio.sleep(0.05)

    async def run(self, lanes: int) -> None:
        timeout = aiohttp.ClientTimeout(total=10)
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with aiohttp.ClientSession(headers=headers, timeout=timeout) as http:
            await asyncio.gather(*(self.lane(http) for _ in range(lanes)))


def start_service(port: int | None, bootstrap: str, prefix: str, log: Path,
                  ws_url: str | None = None) -> subprocess.Popen[bytes]:
    """``rwi-etl ingest`` as a child process (``python -m``), logging to ``log``."""
    env = dict(os.environ, KAFKA_BOOTSTRAP_SERVERS=bootstrap, RWI_TOPIC_PREFIX=prefix,
               RWI_WEBHOOK_TOKEN=TOKEN, RWI_WS_TOKEN=TOKEN_WS, RWI_PBX="pbx-crash")
    argv = [sys.executable, "-m", "connectors.cli.main", "-v", "ingest"]
    if port is not None:
        argv += ["--webhook", f"127.0.0.1:{port}"]
    if ws_url is not None:
        argv += ["--ws", ws_url]
    with log.open("ab") as out:
        return subprocess.Popen(argv, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)


@pytest.mark.timeout(180)
async def test_kill_9_loses_no_acknowledged_event(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "ingest.log"
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for round_ in range(2):
            proc = start_service(port, kafka_bootstrap, topic_prefix, log)
            procs.append(proc)
            await wait_healthy(f"{base}/healthz")
            sender = Sender(f"{base}/rwi-events", f"crash{round_}")
            lanes = asyncio.create_task(sender.run(lanes=4))
            async with asyncio.timeout(60):
                while len(sender.acked) < 300:
                    await asyncio.sleep(0.01)
            os.kill(proc.pid, signal.SIGKILL)  # with requests still in flight
            proc.wait(10)
            await asyncio.sleep(0.3)
            sender.stop = True
            await lanes
            stored = await stored_call_ids(kafka_bootstrap, topic_prefix)
            missing = sender.acked - stored
            assert not missing, f"{len(missing)} acknowledged events lost: {sorted(missing)[:5]}"
            assert 0 in sender.statuses  # the kill really cut requests off
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)


@pytest.mark.timeout(300)
async def test_broker_stop_gives_503_and_loses_no_acknowledged_event(
    kafka_settings: Any, topic_prefix: str, tmp_path: Path
) -> None:
    # A broker of this test's own (data dir and ports), so the shared one keeps running.
    port = free_port()
    env = {"RWI_DATA_DIR": str(tmp_path / "data"), "RWI_KAFKA_PORT": str(port),
           "RWI_KAFKA_CONTROLLER_PORT": str(free_port()),
           "RWI_CACHE_DIR": str(kafka_settings.cache_dir)}
    broker = LocalKafka(load_settings(environ=env))
    await asyncio.to_thread(broker.up, 120.0)
    bootstrap = f"127.0.0.1:{port}"
    svc = IngestService(settings_for(bootstrap, topic_prefix, ack_timeout_s=1.0,
                                     degraded_ack_timeout_s=0.3),
                        Channels(("127.0.0.1", 0), None))
    try:
        await svc.start()
        assert await svc.publisher.wait_connected(60)  # type: ignore[attr-defined]
        assert await svc.wait_accepting(60)
        address = svc.webhook_address
        assert address is not None
        sender = Sender(f"http://127.0.0.1:{address[1]}/rwi-events", "outage")
        lanes = asyncio.create_task(sender.run(lanes=1))  # serial, as RustPBX posts
        async with asyncio.timeout(60):  # a fresh broker settles its partition leaders first
            while len(sender.acked) < 50:
                await asyncio.sleep(0.05)
        before_stop = len(sender.acked)
        await asyncio.to_thread(broker.down, 30.0)
        mark = len(sender.statuses)
        await asyncio.sleep(2.0)
        during = sender.statuses[mark:]
        assert during and 503 in during
        assert all(s in (200, 503) for s in during)
        await asyncio.to_thread(broker.up, 120.0)
        async with asyncio.timeout(90):
            while sender.statuses[-1] != 200:
                await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)
        sender.stop = True
        await lanes
    finally:
        await svc.stop()
    try:
        stored = await stored_call_ids(bootstrap, topic_prefix)
    finally:
        await asyncio.to_thread(broker.down, 30.0)
    missing = sender.acked - stored
    assert not missing, f"{len(missing)} acknowledged events lost: {sorted(missing)[:5]}"
    assert len(sender.acked) > before_stop


@pytest.mark.timeout(180)
async def test_kill_9_then_restart_resumes_from_the_pbx_cache(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    events = [{"event_type": "call_ringing", "call_id": f"ws-crash-{i}"} for i in range(400)]
    pbx = FakePbx([json.dumps(e).encode() for e in events], drop_first_after_frames=False,
                  cache=events)
    log = tmp_path / "ingest.log"
    procs: list[subprocess.Popen[bytes]] = []
    async with running_pbx(pbx) as url:
        try:
            proc = start_service(None, kafka_bootstrap, topic_prefix, log, ws_url=url)
            procs.append(proc)
            async with asyncio.timeout(60):
                while len(pbx.commands) < 2:  # subscribed and resumed: frames are flowing
                    await asyncio.sleep(0.01)
            await asyncio.sleep(0.2)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
            proc = start_service(None, kafka_bootstrap, topic_prefix, log, ws_url=url)
            procs.append(proc)
            wanted = {e["call_id"] for e in events}
            async with asyncio.timeout(60):
                while not wanted <= await stored_call_ids(kafka_bootstrap, topic_prefix):
                    await asyncio.sleep(0.5)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(30) == 0
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(10)
    resumes = [c for c in pbx.commands if c["action"] == "session.resume"]
    assert pbx.connections == 2 and len(resumes) == 2
    assert {c["action"] for c in pbx.commands} <= LISTENER_ACTIONS
    assert TOKEN_WS not in log.read_text()

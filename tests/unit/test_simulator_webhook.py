"""Webhook delivery as RustPBX posts: one request in flight, keep-alive, no retries."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web

from connectors.simulator.config import SimConfig
from connectors.simulator.runner import RunOptions, run_async

pytestmark = pytest.mark.timeout(60)


@dataclass
class Receiver:
    """A loopback endpoint that records bodies, headers, peers and concurrency."""

    delay_s: float = 0.0
    fail_every: int = 0
    bodies: list[str] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    peers: set[tuple[str, int]] = field(default_factory=set)
    in_flight: int = 0
    max_in_flight: int = 0
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            body = await request.text()
            self.bodies.append(body)
            self.headers.append(dict(request.headers))
            peer = request.transport.get_extra_info("peername") if request.transport else None
            if peer:
                self.peers.add(tuple(peer[:2]))
            await asyncio.sleep(self.delay_s)
            if self.fail_every and len(self.bodies) % self.fail_every == 0:
                return web.Response(status=503, text="busy")
            return web.Response(status=200, text="{}")
        finally:
            self.in_flight -= 1


async def _serve(receiver: Receiver) -> AsyncIterator[Receiver]:
    app = web.Application()
    app.router.add_post("/rwi-events", receiver.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    receiver.url = f"http://127.0.0.1:{port}/rwi-events"
    yield receiver
    await runner.cleanup()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async for r in _serve(Receiver(delay_s=0.0005)):
        yield r


async def test_one_request_in_flight_keep_alive_and_headers(receiver: Receiver,
                                                            tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    opts = RunOptions(out=out, webhook=receiver.url, progress=False,
                      headers={"Authorization": "Bearer s3cret", "X-Pbx": "sim"})
    result = await run_async(SimConfig(dialect="current", seed=21, calls=25), opts)
    sent = out.read_text().splitlines()
    assert receiver.bodies == sent  # same bodies, same order
    assert receiver.max_in_flight == 1
    assert len(receiver.peers) == 1  # one keep-alive connection
    assert result.webhook[0].ok == len(sent) and result.delivery_failures == 0
    assert result.webhook[0].max_in_flight == 1
    first = receiver.headers[0]
    assert first["Authorization"] == "Bearer s3cret" and first["X-Pbx"] == "sim"
    assert first["Content-Type"] == "application/json"
    assert json.loads(sent[0])["event_type"] == "test"


async def test_failures_are_not_retried_and_are_counted() -> None:
    async for receiver in _serve(Receiver(fail_every=5)):
        opts = RunOptions(webhook=receiver.url, progress=False)
        result = await run_async(SimConfig(dialect="v1.0", seed=2, calls=10), opts)
        stats = result.webhook[0]
        assert stats.non_2xx == len(receiver.bodies) // 5 > 0
        assert stats.ok + stats.non_2xx == len(receiver.bodies) == result.summary["bodies_written"]
        sequences = [json.loads(b)["sequence"] for b in receiver.bodies]
        assert sequences == sorted(set(sequences))  # no body was posted twice


async def test_timeouts_count_as_errors() -> None:
    async for receiver in _serve(Receiver(delay_s=0.2)):
        opts = RunOptions(webhook=receiver.url, timeout_ms=50, progress=False)
        cfg = SimConfig(dialect="current", seed=2, calls=1, showcase=False, agents=1)
        result = await run_async(cfg, opts)
        stats = result.webhook[0]
        assert stats.errors == result.summary["bodies_written"] > 0 and stats.ok == 0


async def test_lag_drop_skips_the_oldest_when_the_channel_is_full(receiver: Receiver) -> None:
    opts = RunOptions(webhook=receiver.url, lag_drop=True, rate=1_000_000, progress=False)
    result = await run_async(SimConfig(dialect="current", seed=8, calls=40), opts)
    stats = result.webhook[0]
    total = result.summary["bodies_written"]
    assert total > 600 and stats.dropped > 0
    assert stats.ok == len(receiver.bodies) == total - stats.dropped
    assert receiver.max_in_flight == 1


async def test_several_senders_post_in_parallel_each_serially(receiver: Receiver,
                                                              tmp_path: Path) -> None:
    truth = tmp_path / "truth.jsonl"
    opts = RunOptions(webhook=receiver.url, senders=3, truth=truth, progress=False)
    result = await run_async(SimConfig(dialect="current", seed=5, calls=8), opts)
    assert len(result.webhook) == 3 and all(s.max_in_flight == 1 for s in result.webhook)
    assert 1 <= receiver.max_in_flight <= 3
    assert len(receiver.peers) == 3
    summary = json.loads(truth.read_text().splitlines()[0])
    assert summary["pbx_count"] == 3
    assert summary["bodies_written"] == len(receiver.bodies) == sum(s.ok for s in result.webhook)
    created = [json.loads(b)["event"]["call_id"] for b in receiver.bodies
               if json.loads(b)["event_type"] == "call_created"]
    assert len(created) == len(set(created)) == summary["calls_started"]

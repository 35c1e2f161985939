"""The WebSocket listener against a loopback PBX double: auth, subscribe, resume, reconnect."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from connectors.ingest.logs import RedactingFormatter
from connectors.ingest.memory import InMemoryPublisher
from connectors.ingest.metrics import Metrics
from connectors.ingest.wsclient import (
    LISTENER_ACTIONS,
    WsConfig,
    WsListener,
    backoff_delay,
    redact_url,
)
from pipelines import avro
from pipelines.encode import EventEncoder
from pipelines.ingest import BodyConverter
from tests.fixtures.ingest.fake_pbx import TOKEN, FakePbx, running_pbx

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "ingest"
NOW = datetime(2026, 8, 22, 15, 40, tzinfo=UTC)


@pytest.fixture
async def pbx_factory() -> AsyncIterator[Any]:
    async with contextlib.AsyncExitStack() as stack:

        async def start(pbx: FakePbx) -> str:
            return await stack.enter_async_context(running_pbx(pbx))

        yield start


def frames(name: str) -> list[bytes]:
    return [line for line in (FIXTURES / name).read_bytes().splitlines() if line.strip()]


async def run_until(listener: WsListener, condition: Any, timeout_s: float = 5.0) -> None:
    task = asyncio.create_task(listener.run())
    try:
        async with asyncio.timeout(timeout_s):
            while not condition():
                await asyncio.sleep(0.01)
    finally:
        await listener.stop()
        await asyncio.wait_for(task, 5.0)


def listener_for(url: str, publisher: InMemoryPublisher, metrics: Metrics,
                 **overrides: Any) -> WsListener:
    config = WsConfig(url=url, token=TOKEN, contexts=("ivr-ctx",), events=("call_ringing",),
                      reconnect_initial_s=0.01, reconnect_max_s=0.05, **overrides)
    return WsListener(config, BodyConverter("pbx-test"), publisher, metrics, lambda: NOW)


async def test_subscribes_resumes_reconnects_and_publishes(pbx_factory) -> None:
    live = frames("ws_frames_current.jsonl") + frames("ws_frames_v1.jsonl")
    pbx = FakePbx(live)
    url = await pbx_factory(pbx)
    publisher, metrics = InMemoryPublisher(), Metrics()
    listener = listener_for(url, publisher, metrics)
    resumed = 2  # events in resume_reply.json
    await run_until(listener, lambda: pbx.connections >= 2
                    and metrics.total("ws_resumes_total") >= 2)

    assert pbx.auth_seen == ["header", "header"] and pbx.subprotocols == ["rwi-v1", "rwi-v1"]
    actions = [c["action"] for c in pbx.commands]
    assert set(actions) <= LISTENER_ACTIONS  # never attach / detach
    assert actions[:2] == ["session.subscribe", "session.resume"]
    subscribe = pbx.commands[0]
    assert subscribe["params"] == {"contexts": ["ivr-ctx"], "events": ["call_ringing"]}
    assert all(c["params"] and c["action_id"] for c in pbx.commands)
    assert len({c["action_id"] for c in pbx.commands}) == len(pbx.commands)
    assert metrics.total("ws_reconnects_total") >= 1

    store = EventEncoder().store()
    records = [avro.decode(m.value, store).record["meta"] for m in publisher.messages]
    sources = [r["source"] for r in records]
    assert sources.count("ws") == len(live)
    assert sources.count("ws_resume") == 2 * resumed
    assert all(r["received_at"] == NOW for r in records)  # frames carry no time: stamped here
    # The same cached events replayed on both connections keep their event ids.
    replay_ids = [r["event_id"] for r in records if r["source"] == "ws_resume"]
    assert len(set(replay_ids)) == resumed
    # v1.0 frames carry no sequence in this recording, so resume asks from 0.
    resumes = [c for c in pbx.commands if c["action"] == "session.resume"]
    assert resumes[0]["params"] == {"last_sequence": 0}


async def test_token_in_query_and_never_in_logs(pbx_factory, caplog) -> None:
    pbx = FakePbx(frames("ws_frames_current.jsonl")[:2], drop_first_after_frames=False)
    url = await pbx_factory(pbx)
    publisher, metrics = InMemoryPublisher(), Metrics()
    listener = listener_for(url, publisher, metrics, token_in_query=True)
    caplog.set_level("DEBUG")
    await run_until(listener, lambda: len(publisher.messages) >= 4)
    assert pbx.auth_seen == ["query"]
    ours = [r.getMessage() for r in caplog.records if r.name.startswith("connectors")]
    assert ours and not any(TOKEN in line for line in ours)
    # Library debug lines do carry the request line; the service's formatter masks them.
    formatter = RedactingFormatter([TOKEN], logging.Formatter("%(message)s"))
    leaked = [r for r in caplog.records if TOKEN in r.getMessage()]
    assert leaked and all(TOKEN not in formatter.format(r) for r in leaked)
    assert redact_url(f"{url}?token={TOKEN}&x=1").endswith("?token=%2A%2A%2A&x=1")


async def test_bad_token_keeps_retrying_with_backoff(pbx_factory) -> None:
    pbx = FakePbx([])
    url = await pbx_factory(pbx)
    publisher, metrics = InMemoryPublisher(), Metrics()
    config = WsConfig(url=url, token="wrong", reconnect_initial_s=0.01, reconnect_max_s=0.02)
    listener = WsListener(config, BodyConverter("p"), publisher, metrics, lambda: NOW)
    await run_until(listener, lambda: metrics.total("ws_reconnects_total") >= 3)
    assert pbx.connections == 0 and publisher.messages == []


async def test_frames_wait_for_room_instead_of_being_dropped(pbx_factory) -> None:
    live = frames("ws_frames_current.jsonl")
    pbx = FakePbx(live, drop_first_after_frames=False)
    url = await pbx_factory(pbx)
    publisher = InMemoryPublisher(max_in_flight_bytes=1)  # room for one message at a time
    publisher.hold = True
    metrics = Metrics()
    listener = listener_for(url, publisher, metrics, resume=False)
    task = asyncio.create_task(listener.run())
    try:
        async with asyncio.timeout(5):
            while publisher.in_flight_messages == 0:
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.05)
            assert publisher.in_flight_messages == 1  # reading paused on the cap
            while len(publisher.messages) < len(live):
                publisher.release()
                await asyncio.sleep(0.005)
    finally:
        await listener.stop()
        await asyncio.wait_for(task, 5)
    assert len(publisher.messages) == len(live)


async def test_garbage_frames_are_dead_lettered(pbx_factory) -> None:
    pbx = FakePbx([b"not json", b'{"event_type": 7}'], drop_first_after_frames=False)
    url = await pbx_factory(pbx)
    publisher, metrics = InMemoryPublisher(), Metrics()
    listener = listener_for(url, publisher, metrics, resume=False)
    await run_until(listener, lambda: len(publisher.messages) >= 2)
    assert {m.topic for m in publisher.messages} == {"rwi.deadletter.v1"}
    assert metrics.total("dead_letters_total") == 2


def test_backoff_is_capped_exponential_with_jitter() -> None:
    rng = random.Random(7)
    delays = [backoff_delay(n, 0.5, 30.0, rng.random) for n in range(12)]
    for n, delay in enumerate(delays):
        cap = min(30.0, 0.5 * 2**n)
        assert cap / 2 <= delay <= cap
    assert max(delays) <= 30.0 and len(set(delays)) == len(delays)


def sequenced_frames(count: int) -> list[bytes]:
    """1.0-style envelope frames with a ``sequence``, as a resume cursor counts them."""
    return [json.dumps({"rwi": "1.0", "sequence": n, "timestamp": 1755876790 + n,
                        "event_type": "call_ringing",
                        "event": {"call_id": f"seq-{n}"}}).encode()
            for n in range(1, count + 1)]


async def test_frames_are_converted_in_bursts(pbx_factory) -> None:
    live = sequenced_frames(200)
    pbx = FakePbx(live, drop_first_after_frames=False)
    url = await pbx_factory(pbx)
    publisher, metrics = InMemoryPublisher(), Metrics()
    listener = listener_for(url, publisher, metrics, resume=False)
    bursts: list[int] = []
    original = listener._handle_burst

    async def handle(burst: list[Any]) -> None:
        bursts.append(len(burst))
        if len(bursts) == 1:
            await asyncio.sleep(0.3)  # the rest arrives meanwhile and is read ahead
        await original(burst)

    listener._handle_burst = handle  # type: ignore[method-assign]
    await run_until(listener, lambda: len(publisher.messages) >= len(live))
    assert sum(bursts) == len(live) + 1  # and the subscribe reply
    assert max(bursts) > 1 and len(bursts) < len(live)
    keys = [m.key for m in publisher.messages]
    assert keys == [f"seq-{n}".encode() for n in range(1, len(live) + 1)]  # order kept
    assert listener.last_sequence == len(live)


async def test_resume_cursor_moves_only_over_acknowledged_events(pbx_factory) -> None:
    pbx = FakePbx(sequenced_frames(5), drop_first_after_frames=False)
    url = await pbx_factory(pbx)
    publisher, metrics = InMemoryPublisher(), Metrics()
    publisher.hold = True
    listener = listener_for(url, publisher, metrics)
    task = asyncio.create_task(listener.run())
    try:
        async with asyncio.timeout(30):
            while metrics.total("events_received_total") < 5 + 2:  # + 2 replayed by resume
                await asyncio.sleep(0.01)
            assert listener.last_sequence is None  # received, not yet acknowledged
            publisher.fail_with = RuntimeError("broker lost them")
            publisher.hold = False
            for _, future in publisher._held:
                future.set_exception(RuntimeError("broker lost them"))
            publisher._held.clear()
            while pbx.connections < 2:  # a failed delivery reconnects
                await asyncio.sleep(0.01)
            publisher.fail_with = None
            while len([c for c in pbx.commands if c["action"] == "session.resume"]) < 2:
                await asyncio.sleep(0.01)
    finally:
        await listener.stop()
        await asyncio.wait_for(task, 30)
    resumes = [c["params"] for c in pbx.commands if c["action"] == "session.resume"]
    assert resumes == [{"last_sequence": 0}, {"last_sequence": 0}]  # asks for them again
    assert metrics.total("publish_failures_total") >= 5


async def test_a_frame_too_large_for_kafka_is_dead_lettered_not_retried(pbx_factory) -> None:
    """The frames around it are published; the listener does not stall on it."""
    small = frames("ws_frames_current.jsonl")[:2]
    big = json.dumps({"event_type": "call_ringing", "call_id": "big-1",
                      "blob": "x" * 50_000}).encode()
    pbx = FakePbx([small[0], big, small[1]], drop_first_after_frames=False)
    url = await pbx_factory(pbx)
    publisher, metrics = InMemoryPublisher(max_message_bytes=20_000), Metrics()
    listener = listener_for(url, publisher, metrics, resume=False)
    await run_until(listener, lambda: metrics.total("events_published_total") >= 2)
    letters = [m for m in publisher.messages if m.topic == "rwi.deadletter.v1"]
    assert len(publisher.messages) == 3 and len(letters) == 1
    record = avro.decode(letters[0].value, EventEncoder().store()).record
    assert record["reason"] == "event_too_large" and big.startswith(record["raw"])
    assert letters[0].size <= 20_000
    assert metrics.value("dead_letters_total", channel="ws", reason="event_too_large") == 1


async def test_a_frame_that_only_mentions_action_id_is_not_dropped(pbx_factory) -> None:
    """Only command replies (``type: command_*``) are taken as replies; an event frame or
    garbage carrying an ``action_id`` key is converted or dead-lettered like any other."""
    odd = [b'{"event_type":"call_ringing","call_id":"c-odd","action_id":"x"}',
           b'{"action_id": "y", "broken": ']
    pbx = FakePbx(odd, drop_first_after_frames=False)
    url = await pbx_factory(pbx)
    publisher, metrics = InMemoryPublisher(), Metrics()
    listener = listener_for(url, publisher, metrics)
    await run_until(listener, lambda: len(publisher.messages) >= 4)  # + 2 replayed events
    assert [m.key for m in publisher.messages if m.key == b"c-odd"] == [b"c-odd"]
    assert metrics.total("dead_letters_total") == 1


async def test_a_frame_over_the_frame_limit_is_dead_lettered_then_received(pbx_factory) -> None:
    """A frame over ``max_frame_bytes`` closes the connection before it is read: the incident
    is a ``frame_too_large`` dead letter, and the limit grows, so the resume that follows
    delivers the frame instead of the listener reconnecting into the same refusal."""
    small = [json.loads(f) for f in frames("ws_frames_current.jsonl")[:2]]
    big = {"event_type": "call_ringing", "call_id": "big-1", "blob": "x" * 50_000}
    live = [json.dumps(small[0]).encode(), json.dumps(big).encode(),
            json.dumps(small[1]).encode()]
    pbx = FakePbx(live, drop_first_after_frames=False, cache=[big, small[1]])
    url = await pbx_factory(pbx)
    publisher, metrics = InMemoryPublisher(), Metrics()
    listener = listener_for(url, publisher, metrics, max_frame_bytes=20_000)
    await run_until(listener, lambda: any(m.key == b"big-1" for m in publisher.messages))

    letters = [avro.decode(m.value, EventEncoder().store()).record
               for m in publisher.messages if m.topic == "rwi.deadletter.v1"]
    assert letters and {r["reason"] for r in letters} == {"frame_too_large"}
    assert "over the 20000-byte limit" in letters[0]["detail"] and letters[0]["raw"] == b""
    # Refused once live, then the resume reply (the cache) until the limit had grown enough.
    assert metrics.value("dead_letters_total", channel="ws", reason="frame_too_large") == len(
        letters)
    assert 20_000 < listener.max_frame_bytes <= 16 * 20_000
    keys = [m.key for m in publisher.messages if m.topic != "rwi.deadletter.v1"]
    assert keys.count(b"big-1") == 1 and small[0]["call_id"].encode() in keys

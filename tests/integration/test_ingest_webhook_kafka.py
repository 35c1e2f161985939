"""The webhook and WebSocket channels into the real broker: stored, decodable, right topic."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from connectors.ingest.service import Channels, IngestService
from pipelines import avro
from pipelines.catalog import all_topics, dead_letter_topic
from pipelines.encode import EventEncoder
from pipelines.settings import Settings, load_settings
from tests.fixtures.ingest.fake_pbx import FakePbx, running_pbx

pytestmark = pytest.mark.kafka

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "ingest"
TOKEN = "integration-token"


async def read_topics(bootstrap: str, topics: list[str]) -> list[Any]:
    """Every record now in ``topics``, read from the beginning up to the end offsets."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics(topics)
    finally:
        await admin.close()
    parts = [TopicPartition(d["topic"], p["partition"]) for d in described
             if d["error_code"] == 0 for p in d["partitions"]]
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        if not parts:
            return []
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        ends = await consumer.end_offsets(parts)
        out: list[Any] = []
        async with asyncio.timeout(30):
            while [tp for tp in parts if await consumer.position(tp) < ends[tp]]:
                batch = await consumer.getmany(timeout_ms=500)
                for records in batch.values():
                    out.extend(records)
        return out
    finally:
        await consumer.stop()


def settings_for(bootstrap: str, prefix: str, **ingest: Any) -> Settings:
    base = load_settings(environ={"KAFKA_BOOTSTRAP_SERVERS": bootstrap,
                                  "RWI_TOPIC_PREFIX": prefix, "RWI_PBX": "pbx-it",
                                  "RWI_WEBHOOK_TOKEN": TOKEN})
    return base.model_copy(update={
        "kafka": base.kafka.model_copy(update={"partitions": 2}),
        "ingest": base.ingest.model_copy(update=ingest),
    })


@pytest.fixture
async def service(kafka_bootstrap: str, topic_prefix: str) -> AsyncIterator[IngestService]:
    svc = IngestService(settings_for(kafka_bootstrap, topic_prefix),
                        Channels(("127.0.0.1", 0), None))
    await svc.start()
    assert await svc.publisher.wait_connected(60)  # type: ignore[attr-defined]
    assert await svc.wait_accepting(60)
    yield svc
    await svc.stop()


def lines(name: str) -> list[bytes]:
    return [line for line in (FIXTURES / name).read_bytes().splitlines() if line.strip()]


async def test_webhook_bodies_of_both_dialects_land_in_kafka(
    service: IngestService, kafka_bootstrap: str, topic_prefix: str
) -> None:
    address = service.webhook_address
    assert address is not None
    url = f"http://127.0.0.1:{address[1]}/rwi-events"
    valid = lines("webhook_current.jsonl") + lines("webhook_v1.jsonl")
    garbage = [g.encode() for g in json.loads((FIXTURES / "garbage.json").read_text())]
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as http:
        for body in valid:
            async with http.post(url, data=body) as response:
                assert response.status == 200, await response.text()
        for body in garbage:
            async with http.post(url, data=body) as response:
                assert response.status == 400

    records = await read_topics(kafka_bootstrap, all_topics(topic_prefix))
    store = EventEncoder(topic_prefix).store()
    dead_topic = dead_letter_topic(topic_prefix)
    events = [r for r in records if r.topic != dead_topic]
    letters = [r for r in records if r.topic == dead_topic]
    assert len(events) == len(valid) and len(letters) == len(garbage)
    by_type: dict[str, Any] = {}
    seen_types = []
    for record in events:
        decoded = avro.decode(record.value, store).record
        meta = decoded["meta"]
        assert record.topic == f"{topic_prefix}.{meta['category']}.v1"
        assert (meta["source"], meta["pbx"]) == ("webhook", "pbx-it")
        assert dict(record.headers)["rwi.source"] == b"webhook"
        by_type[meta["event_type"]] = (record, meta)
        seen_types.append(meta["event_type"])
    assert sorted(seen_types) == sorted(json.loads(b)["event_type"] for b in valid)
    hangup, meta = by_type["call_hangup"]
    assert hangup.key == meta["call_id"].encode() and meta["dialect"] in {"current", "v1.0"}
    raws = sorted(avro.decode(r.value, store).record["raw"] for r in letters)
    assert raws == sorted(garbage)


async def test_websocket_frames_and_resume_land_in_kafka(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    live = lines("ws_frames_current.jsonl") + lines("ws_frames_v1.jsonl")
    pbx = FakePbx(live, drop_first_after_frames=False)
    async with running_pbx(pbx) as ws_url:
        await _run_ws(kafka_bootstrap, topic_prefix, ws_url, len(live) + 2)
    records = await read_topics(kafka_bootstrap, all_topics(topic_prefix))
    store = EventEncoder(topic_prefix).store()
    sources = sorted(avro.decode(r.value, store).record["meta"]["source"] for r in records)
    assert sources == ["ws"] * len(live) + ["ws_resume"] * 2


async def _run_ws(kafka_bootstrap: str, topic_prefix: str, ws_url: str, expect: int) -> None:
    settings = settings_for(kafka_bootstrap, topic_prefix)
    settings = settings.model_copy(update={"websocket": settings.websocket.model_copy(
        update={"token": "ws-secret"})})
    svc = IngestService(settings, Channels(None, ws_url))
    await svc.start()
    try:
        async with asyncio.timeout(60):
            while svc.metrics.total("events_published_total") < expect:
                await asyncio.sleep(0.05)
    finally:
        await svc.stop()


async def test_unreachable_broker_is_503_never_2xx(topic_prefix: str) -> None:
    closed_port = "127.0.0.1:1"  # nothing listens on port 1 on loopback
    settings = settings_for(closed_port, topic_prefix, ack_timeout_s=0.5)
    svc = IngestService(settings, Channels(("127.0.0.1", 0), None))
    await svc.start()
    try:
        address = svc.webhook_address
        assert address is not None
        base = f"http://127.0.0.1:{address[1]}"
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as http:
            async with http.get(f"{base}/healthz") as response:
                assert response.status == 503
            for body in [*lines("webhook_current.jsonl")[:3], b"garbage"]:
                async with http.post(f"{base}/rwi-events", data=body) as response:
                    assert response.status == 503
                    assert response.headers["Retry-After"] == "1"
    finally:
        await svc.stop()
    assert svc.metrics.total("events_published_total") == 0


@pytest.mark.parametrize("dialect", ["current", "v1.0"])
async def test_simulated_pbx_every_body_lands_once(
    service: IngestService, kafka_bootstrap: str, topic_prefix: str, tmp_path: Path,
    dialect: str,
) -> None:
    address = service.webhook_address
    assert address is not None
    out = tmp_path / "bodies.jsonl"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "connectors.cli.main", "simulate", "--dialect", dialect,
        "--calls", "8", "--seed", "11", "--no-progress", "--out", str(out),
        "--webhook", f"http://127.0.0.1:{address[1]}/rwi-events",
        "--header", f"Authorization:Bearer {TOKEN}",
        cwd=REPO, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    _, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode()[-2000:]
    sent = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
    records = await read_topics(kafka_bootstrap, all_topics(topic_prefix))
    store = EventEncoder(topic_prefix).store()
    assert not [r for r in records if r.topic == dead_letter_topic(topic_prefix)]
    metas = [avro.decode(r.value, store).record["meta"] for r in records]
    assert len(metas) == len(sent)
    assert sorted(m["event_type"] for m in metas) == sorted(b["event_type"] for b in sent)
    assert {m["dialect"] for m in metas} == {dialect}
    for record, meta in zip(records, metas, strict=True):
        assert record.topic == f"{topic_prefix}.{meta['category']}.v1"


async def test_bursts_keep_per_key_order_and_the_default_partitioner(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    """Bulk submissions (one record batch per partition) and single sends interleaved."""
    from aiokafka.partitioner import DefaultPartitioner

    from connectors.ingest.kafka_publisher import KafkaPublisher
    from pipelines.encode import OutgoingMessage

    settings = settings_for(kafka_bootstrap, topic_prefix, max_batch_bytes=4096)
    topics = all_topics(topic_prefix)[:3]
    publisher = KafkaPublisher(kafka_bootstrap, settings.ingest, topics=topics, partitions=2)
    await publisher.start()
    assert await publisher.wait_connected(60)
    sent: list[OutgoingMessage] = []
    acks = []
    try:
        for burst in range(20):
            size = 1 if burst % 4 == 0 else 150  # lone messages take the direct path
            messages = [OutgoingMessage(topics[i % 3], f"call-{i % 11}".encode(),
                                        f"{burst}:{i}".encode() * 20, [("n", b"%d" % i)])
                        for i in range(size)]
            sent += messages
            acks.append(await publisher.submit(messages))
        async with asyncio.timeout(60):
            await asyncio.gather(*acks)
    finally:
        await publisher.close(30)
    records = await read_topics(kafka_bootstrap, topics)
    assert len(records) == len(sent)
    partitioner = DefaultPartitioner()
    stored: dict[tuple[str, bytes], list[bytes]] = {}
    for record in sorted(records, key=lambda r: (r.topic, r.partition, r.offset)):
        assert record.partition == partitioner(record.key, [0, 1], [0, 1])
        stored.setdefault((record.topic, record.key), []).append(record.value)
    expected: dict[tuple[str, bytes], list[bytes]] = {}
    for message in sent:
        expected.setdefault((message.topic, message.key), []).append(message.value)
    assert stored == expected  # every message once, each key's messages in order


def oversize(call_id: str, blob: int) -> dict[str, Any]:
    """A current-dialect webhook envelope carrying an unknown field of ``blob`` characters."""
    template = json.loads(lines("webhook_current.jsonl")[1])
    event = dict(template["event"], call_id=call_id, blob="x" * blob)
    return dict(template, call_id=call_id, event=event)


async def test_events_too_large_for_kafka_are_dead_lettered_not_retried(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    """Both channels, the real producer limit (1 MiB requests): an oversize event is a
    dead letter that fits, the webhook answers 413, the rest of a batch and the frames
    after it are stored, and nothing waits on a retry that could never succeed."""
    two_mib = 2 * 1024 * 1024
    small = lines("ws_frames_current.jsonl")[:2]
    big_frame = json.dumps({"event_type": "call_ringing", "call_id": "big-ws",
                            "blob": "y" * two_mib}).encode()
    pbx = FakePbx([small[0], big_frame, small[1]], drop_first_after_frames=False)
    settings = settings_for(kafka_bootstrap, topic_prefix)
    settings = settings.model_copy(update={
        "websocket": settings.websocket.model_copy(update={"token": "ws-secret"}),
        "webhook": settings.webhook.model_copy(update={"max_body_bytes": 4 * 1024 * 1024}),
    })
    single = json.dumps(oversize("big-hook", two_mib)).encode()
    batch = json.dumps([oversize("a-1", 10), oversize("big-batch", two_mib),
                        oversize("c-3", 10)]).encode()
    async with running_pbx(pbx) as ws_url:
        svc = IngestService(settings, Channels(("127.0.0.1", 0), ws_url))
        await svc.start()
        try:
            assert await svc.publisher.wait_connected(60)  # type: ignore[attr-defined]
            assert await svc.wait_accepting(60)
            address = svc.webhook_address
            assert address is not None
            url = f"http://127.0.0.1:{address[1]}/rwi-events"
            async with aiohttp.ClientSession(
                    headers={"Authorization": f"Bearer {TOKEN}"}) as http:
                async with asyncio.timeout(30):
                    async with http.post(url, data=single) as response:
                        answer = await response.json()
                        assert response.status == 413, answer
                        assert (answer["reason"], answer["events"]) == ("event_too_large", 0)
                    async with http.post(url, data=batch) as response:
                        answer = await response.json()
                        assert response.status == 413, answer
                        assert (answer["reason"], answer["events"]) == ("event_too_large", 2)
                    async with http.post(url, data=lines("webhook_current.jsonl")[0]) as ok:
                        assert ok.status == 200  # the publisher is healthy, nothing stuck
            async with asyncio.timeout(60):  # two live frames and the resume's two events
                while svc.metrics.total("dead_letters_total") < 3 or svc.metrics.value(
                        "events_published_total", channel="ws") < 2:
                    await asyncio.sleep(0.05)
        finally:
            await svc.stop()
    records = await read_topics(kafka_bootstrap, all_topics(topic_prefix))
    store = EventEncoder(topic_prefix).store()
    dead_topic = dead_letter_topic(topic_prefix)
    letters = [avro.decode(r.value, store).record for r in records if r.topic == dead_topic]
    assert sorted(x["source"] for x in letters) == ["webhook", "webhook", "ws"]
    for letter in letters:
        assert letter["reason"] == "event_too_large"
        assert 0 < len(letter["raw"]) < two_mib and "truncated" in letter["detail"]
    assert any(single.startswith(x["raw"]) for x in letters)
    assert any(big_frame.startswith(x["raw"]) for x in letters)
    keys = sorted(r.key for r in records if r.topic != dead_topic)
    assert b"a-1" in keys and b"c-3" in keys and not [k for k in keys if k.startswith(b"big")]
    assert len(keys) == 2 + 1 + 2 + 2  # batch rest, the 200, two frames, two resumed

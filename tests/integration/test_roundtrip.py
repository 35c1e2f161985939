"""Every event type, in each dialect it exists in, through the real broker and back."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from pipelines import avro
from pipelines.catalog import all_topics
from pipelines.encode import OutgoingMessage
from pipelines.ingest import BodyConverter
from pipelines.samples import all_examples
from pipelines.topics import ensure_topics

pytestmark = pytest.mark.kafka
RECEIVED = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)


async def _produce(bootstrap: str, messages: list[OutgoingMessage]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, acks="all")
    await producer.start()
    try:
        futures = [
            await producer.send(m.topic, m.value, key=m.key, headers=m.headers) for m in messages
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def _consume_all(
    bootstrap: str, topics: list[str], partitions_per_topic: int
) -> dict[str, list]:  # type: ignore[type-arg]
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    out: dict[str, list] = {t: [] for t in topics}  # type: ignore[type-arg]
    try:
        partitions = [TopicPartition(t, p) for t in topics for p in range(partitions_per_topic)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        remaining = {tp for tp, end in ends.items() if end > 0}
        while remaining:
            batch = await consumer.getmany(timeout_ms=2000)
            for tp, records in batch.items():
                out[tp.topic].extend(records)
                if records and records[-1].offset + 1 >= ends[tp]:
                    remaining.discard(tp)
    finally:
        await consumer.stop()
    return out


async def test_every_type_round_trips_through_kafka(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    converter = BodyConverter("it-pbx", topic_prefix)
    topics = all_topics(topic_prefix)
    await ensure_topics(kafka_bootstrap, topics, 3, 1, 3_600_000)
    expected: dict[str, dict] = {}  # type: ignore[type-arg]
    messages: list[OutgoingMessage] = []
    bodies = [body for _, _, body in all_examples()]
    bodies.append(json.dumps({"event_type": "future_event", "call_id": "c9", "x": [1]}).encode())
    garbage = [b"not json", b"[]", b'{"no": "type"}', b"\xff\x00"]
    for body in bodies + garbage:
        converted = converter.convert(body, source="webhook", received_at=RECEIVED)
        messages.extend(converted.messages)
        for event in converted.events:
            expected[event.event_id] = event.to_record()
    assert len(expected) == len(bodies)

    await _produce(kafka_bootstrap, messages)
    consumed = await _consume_all(kafka_bootstrap, topics, 3)

    store = converter.encoder.store()
    seen: dict[str, dict] = {}  # type: ignore[type-arg]
    dead = []
    for topic, records in consumed.items():
        for record in records:
            decoded = avro.decode(record.value, store)
            headers = dict(record.headers)
            assert headers["rwi.schema"] == decoded.schema.fingerprint_hex.encode()
            if topic.endswith("deadletter.v1"):
                dead.append(decoded.record)
                continue
            meta = decoded.record["meta"]
            assert topic == f"{topic_prefix}.{meta['category']}.v1"
            seen[meta["event_id"]] = decoded.record
    assert seen == expected  # every event, decoded, equals its canonical record
    assert sorted(d["raw"] for d in dead) == sorted(garbage)
    assert all(d["reason"] for d in dead)
    unknown = [r for r in seen.values() if r["meta"]["category"] == "unknown"]
    assert [json.loads(r["extra"]) for r in unknown] == [{"x": [1]}]

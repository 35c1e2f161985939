"""The real broker: it answers, topics are created idempotently, a message round-trips."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from pipelines.kafka_local import LocalKafka
from pipelines.settings import Settings
from pipelines.topics import ensure_topics, probe_cluster

pytestmark = pytest.mark.kafka

RETENTION_MS = 3_600_000


def test_broker_answers(kafka_bootstrap: str, kafka_settings: Settings) -> None:
    ready, why = probe_cluster(kafka_bootstrap)
    assert ready, why
    status = LocalKafka(kafka_settings).status()
    assert status.ready, status.detail
    assert status.bootstrap == kafka_bootstrap
    if not status.managed:  # an external cluster does not report its version
        assert kafka_settings.kafka.bootstrap_servers is not None
    else:
        assert status.version == kafka_settings.kafka.version
        assert status.pid is not None


async def test_ensure_topics_creates_once(kafka_bootstrap: str, topic_prefix: str) -> None:
    names = [f"{topic_prefix}.call", f"{topic_prefix}.media"]

    created = await ensure_topics(kafka_bootstrap, names, 3, 1, RETENTION_MS)
    again = await ensure_topics(kafka_bootstrap, [*names, names[0]], 3, 1, RETENTION_MS)

    assert sorted(created) == sorted(names)
    assert again == []
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        described = {t["topic"]: t for t in await admin.describe_topics(names)}
    finally:
        await admin.close()
    assert {name: len(described[name]["partitions"]) for name in names} == dict.fromkeys(
        names, 3
    )


async def test_message_round_trips(kafka_bootstrap: str, topic_prefix: str) -> None:
    topic = f"{topic_prefix}.roundtrip"
    await ensure_topics(kafka_bootstrap, [topic], 1, 1, RETENTION_MS)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:
        sent = await producer.send_and_wait(topic, b"payload", key=b"call-1", partition=0)
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=kafka_bootstrap, group_id=f"{topic_prefix}.group",
        auto_offset_reset="earliest", enable_auto_commit=False,
    )
    await consumer.start()
    try:
        record = await asyncio.wait_for(consumer.getone(), timeout=30)
    finally:
        await consumer.stop()

    assert (record.topic, record.partition, record.offset) == (topic, 0, sent.offset)
    assert (record.key, record.value) == (b"call-1", b"payload")
